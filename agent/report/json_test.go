package report

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestJSONExport(t *testing.T) {
	out := render(t, jsonOf, smallSession())
	if strings.Contains(out, "SECRETTOKEN") || strings.Contains(out, "ack_url") {
		t.Error("the export carries an alarm's acknowledge link")
	}

	// The documented layout, field by field (README.md, "JSON").
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	assertKeys(t, "top level", doc, "format", "session", "readings", "left_out", "alarms", "acknowledgements")

	var got struct {
		Format  string `json:"format"`
		Session struct {
			ID, Site, Room, Route, Started string
			Ended                          *string
			Doses                          []string
			Baseline                       map[string]struct {
				Value  *float64
				Unit   string
				At     string
				Device string
			}
			BaselineWarning string `json:"baseline_warning"`
			Check           *struct {
				At      string
				Metrics []struct {
					Metric          string
					Baseline, Final *float64
					Unit            string
					WithinTolerance bool `json:"within_tolerance"`
				}
				ObservationLongEnough bool    `json:"observation_long_enough"`
				ObservedSeconds       float64 `json:"observed_seconds"`
				MinObservationSeconds float64 `json:"min_observation_seconds"`
				Result                string
			}
		}
		Readings []struct {
			Received   string
			DeviceTime string `json:"device_time"`
			Device     string
			Seq        uint64
			Metric     string
			Value      *float64
			Unit       string
			Valid      bool
			Flags      []string
		}
		LeftOut map[string]int `json:"left_out"`
		Alarms  []struct {
			AlarmID   string `json:"alarm_id"`
			EventID   string `json:"event_id"`
			Phase     string
			Kind      string
			Priority  string
			State     string
			Metric    string
			Value     *float64
			Unit      string
			Limit     *float64
			Condition string
			Text      string
			Device    string
			Onset     string
			Sent      string
		}
		Acknowledgements []struct {
			AlarmID string `json:"alarm_id"`
			EventID string `json:"event_id"`
			By, Via string
			At      string
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Format != "vigil-session-export/1" {
		t.Errorf("format %q", got.Format)
	}
	ss := got.Session
	if ss.ID != "s-fixture0000000001" || ss.Site != "clinic-a" || ss.Room != "room-1" || ss.Route != "im" ||
		ss.Started != "2025-03-14T09:00:00.000Z" || ss.Ended == nil || *ss.Ended != "2025-03-14T11:05:00.000Z" {
		t.Errorf("session %+v", ss)
	}
	if !slices.Equal(ss.Doses, []string{"2025-03-14T09:10:00.000Z"}) {
		t.Errorf("doses %v", ss.Doses)
	}
	if b := ss.Baseline["nibp_systolic"]; b.Value == nil || *b.Value != 128 || b.Unit != "mm[Hg]" || b.At != "2025-03-14T09:02:00.000Z" || b.Device != nibp {
		t.Errorf("systolic baseline %+v", b)
	}
	if b := ss.Baseline["spo2"]; b.Unit != "%" {
		t.Errorf("spo2 baseline unit %q: the catalogue's unit fills an empty one", b.Unit)
	}
	c := ss.Check
	if c == nil || len(c.Metrics) != 3 || c.ObservationLongEnough || c.ObservedSeconds != 6900 || c.MinObservationSeconds != 7200 ||
		!strings.HasPrefix(c.Result, "check failed") {
		t.Fatalf("check %+v", c)
	}
	if m := c.Metrics[2]; m.Metric != "nibp_diastolic" || m.Final != nil || m.Unit != "mm[Hg]" || m.WithinTolerance {
		t.Errorf("missing final value: %+v", m)
	}

	if len(got.Readings) != 12 {
		t.Fatalf("%d readings, want 12 (the pleth batch left out)", len(got.Readings))
	}
	r0 := got.Readings[0]
	if r0.Received != "2025-03-14T09:00:01.000Z" || r0.DeviceTime != "2025-03-14T08:59:58.000Z" || r0.Device != oximeter ||
		r0.Seq != 1 || r0.Metric != "spo2" || r0.Value == nil || *r0.Value != 98 || r0.Unit != "%" || !r0.Valid || r0.Flags != nil {
		t.Errorf("first reading %+v", r0)
	}
	for _, i := range []int{2, 3, 10} { // sentinel 127, NaN, failed diastolic
		if r := got.Readings[i]; r.Valid || r.Value != nil {
			t.Errorf("reading %d (%s seq %d) valid=%v value=%v: want invalid and null", i, r.Metric, r.Seq, r.Valid, r.Value)
		}
	}
	if f := got.Readings[2].Flags; !slices.Equal(f, []string{"sensor-off", "out-of-range"}) {
		t.Errorf("flags %v", f)
	}
	if !reflect.DeepEqual(got.LeftOut, map[string]int{"pleth": 1}) {
		t.Errorf("left_out %v", got.LeftOut)
	}

	// Every event, in sent order; the escalation keeps its priority.
	var phases []string
	for _, a := range got.Alarms {
		phases = append(phases, a.EventID+":"+a.Phase+":"+a.Priority)
	}
	if want := []string{"ev-1:start:medium", "ev-1:end:medium", "ev-2:start:medium", "ev-2:update:high"}; !slices.Equal(phases, want) {
		t.Errorf("alarm events %v, want %v", phases, want)
	}
	a0 := got.Alarms[0]
	if a0.AlarmID != "spo2-low-medium/oximeter-1" || a0.Kind != "physiological" || a0.State != "active" || a0.Metric != "spo2" ||
		a0.Value == nil || *a0.Value != 89 || a0.Limit == nil || *a0.Limit != 90 || a0.Unit != "%" || a0.Condition != "below" ||
		a0.Device != oximeter || a0.Onset != "2025-03-14T09:30:00.000Z" || a0.Sent != "2025-03-14T09:30:15.000Z" {
		t.Errorf("first alarm event %+v", a0)
	}
	if len(got.Acknowledgements) != 2 || got.Acknowledgements[0].By != "RN Kim" || got.Acknowledgements[0].Via != "phone link" ||
		got.Acknowledgements[0].EventID != "ev-1" || got.Acknowledgements[0].At != "2025-03-14T09:31:00.000Z" {
		t.Errorf("acknowledgements %+v", got.Acknowledgements)
	}
}

// JSON cannot carry NaN or infinity: a bad baseline, check value or alarm
// limit becomes null instead of failing the whole export.
func TestJSONNonFiniteBecomesNull(t *testing.T) {
	s := smallSession()
	nan, inf := 0.0, 0.0
	nan = nan / nan
	inf = 1 / inf
	s.Baseline["spo2"] = Value{Value: nan}
	s.Check.Metrics[0].Final = &inf
	s.Alarms[0].Limit = &nan
	out := render(t, jsonOf, s)
	var doc struct {
		Session struct {
			Baseline map[string]struct{ Value *float64 }
			Check    struct{ Metrics []struct{ Final *float64 } }
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Session.Baseline["spo2"].Value != nil || doc.Session.Check.Metrics[0].Final != nil {
		t.Errorf("non-finite values not null: %s", out[:600])
	}
}

func assertKeys(t *testing.T, where string, m map[string]json.RawMessage, want ...string) {
	t.Helper()
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s keys %v, want %v", where, got, want)
	}
}
