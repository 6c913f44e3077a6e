package report

import (
	"bufio"
	"encoding/json"
	"io"
	"slices"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// JSONFormat names the JSON export's layout; it changes when a field
// changes meaning or goes away (adding a field keeps it).
const JSONFormat = "vigil-session-export/1"

// The JSON export's shape. Field names are documented in README.md; times
// are RFC 3339 UTC with milliseconds, numbers that are not valid are null.
type (
	jsonExport struct {
		Format           string         `json:"format"`
		Session          jsonSession    `json:"session"`
		Readings         []jsonReading  `json:"readings"`
		LeftOut          map[string]int `json:"left_out,omitempty"`
		Alarms           []jsonAlarm    `json:"alarms"`
		Acknowledgements []jsonAck      `json:"acknowledgements"`
	}
	jsonSession struct {
		ID              string                  `json:"id"`
		Site            string                  `json:"site"`
		Room            string                  `json:"room"`
		Route           string                  `json:"route"`
		Started         string                  `json:"started"`
		Ended           *string                 `json:"ended"`
		Doses           []string                `json:"doses"`
		Baseline        map[string]jsonBaseline `json:"baseline"`
		BaselineWarning string                  `json:"baseline_warning"`
		Check           *jsonCheck              `json:"check"`
	}
	jsonBaseline struct {
		Value  *float64 `json:"value"`
		Unit   string   `json:"unit"`
		At     string   `json:"at"`
		Device string   `json:"device"`
	}
	jsonCheck struct {
		At                    string            `json:"at"`
		Metrics               []jsonMetricCheck `json:"metrics"`
		ObservationLongEnough bool              `json:"observation_long_enough"`
		ObservedSeconds       float64           `json:"observed_seconds"`
		MinObservationSeconds float64           `json:"min_observation_seconds"`
		Result                string            `json:"result"`
	}
	jsonMetricCheck struct {
		Metric          string   `json:"metric"`
		Baseline        *float64 `json:"baseline"`
		Final           *float64 `json:"final"`
		Unit            string   `json:"unit"`
		WithinTolerance bool     `json:"within_tolerance"`
	}
	jsonReading struct {
		Received   string   `json:"received"`
		DeviceTime string   `json:"device_time,omitempty"`
		Device     string   `json:"device"`
		Seq        uint64   `json:"seq"`
		Metric     string   `json:"metric"`
		Value      *float64 `json:"value"`
		Unit       string   `json:"unit"`
		Valid      bool     `json:"valid"`
		Flags      []string `json:"flags,omitempty"`
	}
	jsonAlarm struct {
		AlarmID   string   `json:"alarm_id"`
		EventID   string   `json:"event_id"`
		Phase     string   `json:"phase"`
		Kind      string   `json:"kind"`
		Priority  string   `json:"priority"`
		State     string   `json:"state"`
		Metric    string   `json:"metric,omitempty"`
		Value     *float64 `json:"value"`
		Unit      string   `json:"unit,omitempty"`
		Limit     *float64 `json:"limit"`
		Condition string   `json:"condition,omitempty"`
		Text      string   `json:"text"`
		Device    string   `json:"device,omitempty"`
		Onset     string   `json:"onset"`
		Sent      string   `json:"sent"`
	}
	jsonAck struct {
		AlarmID string `json:"alarm_id"`
		EventID string `json:"event_id,omitempty"`
		By      string `json:"by"`
		Via     string `json:"via"`
		At      string `json:"at"`
	}
)

// WriteJSON writes the session, its exported readings (time order), every
// alarm event (sent order) and the acknowledgements as one JSON document
// (README.md, "JSON"). An alarm event's acknowledge link (Event.AckURL) is
// left out: it is a credential that acknowledges the alarm, not a record.
func WriteJSON(w io.Writer, s Session) error {
	if err := validate(&s); err != nil {
		return err
	}
	sel := selectReadings(s.Readings)
	out := jsonExport{
		Format:           JSONFormat,
		Session:          sessionJSON(&s),
		Readings:         make([]jsonReading, len(sel.readings)),
		LeftOut:          sel.leftOut,
		Alarms:           make([]jsonAlarm, 0, len(s.Alarms)),
		Acknowledgements: make([]jsonAck, 0, len(s.Acknowledgements)),
	}
	for i := range sel.readings {
		r := &sel.readings[i]
		info := r.Metric.Info()
		jr := jsonReading{
			Received:   formatTime(r.Received),
			DeviceTime: formatTime(r.DeviceTime),
			Device:     r.Device,
			Seq:        r.Seq,
			Metric:     info.Name,
			Unit:       info.Unit,
			Valid:      usable(r),
			Flags:      r.Flags.Names(),
		}
		if jr.Valid {
			v := r.Value
			jr.Value = &v
		}
		out.Readings[i] = jr
	}
	for _, e := range sortedEvents(s.Alarms) {
		out.Alarms = append(out.Alarms, jsonAlarm{
			AlarmID:   e.AlarmID,
			EventID:   e.EventID,
			Phase:     string(e.Phase),
			Kind:      string(e.Kind),
			Priority:  e.Priority.String(),
			State:     string(e.State),
			Metric:    e.Metric,
			Value:     finite(e.Value),
			Unit:      e.Unit,
			Limit:     finite(e.Limit),
			Condition: e.Condition,
			Text:      e.Text,
			Device:    e.Device,
			Onset:     formatTime(e.Onset),
			Sent:      formatTime(e.Sent),
		})
	}
	for _, a := range sortedAcks(s.Acknowledgements) {
		out.Acknowledgements = append(out.Acknowledgements, jsonAck{
			AlarmID: a.AlarmID, EventID: a.EventID, By: a.By, Via: a.Via, At: formatTime(a.At),
		})
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return bw.Flush()
}

func sessionJSON(s *Session) jsonSession {
	js := jsonSession{
		ID:              s.ID,
		Site:            s.Site,
		Room:            s.Room,
		Route:           s.Route,
		Started:         formatTime(s.Started),
		Doses:           make([]string, 0, len(s.Doses)),
		Baseline:        make(map[string]jsonBaseline, len(s.Baseline)),
		BaselineWarning: s.BaselineWarning,
	}
	if s.Ended != nil {
		e := formatTime(*s.Ended)
		js.Ended = &e
	}
	for _, d := range sortedTimes(s.Doses) {
		js.Doses = append(js.Doses, formatTime(d))
	}
	for name, b := range s.Baseline {
		v := b.Value
		js.Baseline[name] = jsonBaseline{
			Value: finite(&v), Unit: unitOf(name, b.Unit), At: formatTime(b.At), Device: b.Device,
		}
	}
	if c := s.Check; c != nil {
		jc := &jsonCheck{
			At:                    formatTime(c.At),
			Metrics:               make([]jsonMetricCheck, 0, len(c.Metrics)),
			ObservationLongEnough: c.ObservationLongEnough,
			ObservedSeconds:       c.Observed.Seconds(),
			MinObservationSeconds: c.MinObservation.Seconds(),
			Result:                c.Result,
		}
		for _, m := range c.Metrics {
			jc.Metrics = append(jc.Metrics, jsonMetricCheck{
				Metric: m.Metric, Baseline: finite(m.Baseline), Final: finite(m.Final),
				Unit: unitOf(m.Metric, m.Unit), WithinTolerance: m.WithinTolerance,
			})
		}
		js.Check = jc
	}
	return js
}

// sortedEvents orders alarm events by the time they were sent (stable, so
// events sent at the same instant keep the engine's order).
func sortedEvents(in []alarm.Event) []alarm.Event {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b alarm.Event) int { return a.Sent.Compare(b.Sent) })
	return out
}

func sortedAcks(in []Ack) []Ack {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b Ack) int { return a.At.Compare(b.At) })
	return out
}

func sortedTimes(in []time.Time) []time.Time {
	out := slices.Clone(in)
	slices.SortFunc(out, time.Time.Compare)
	return out
}
