package report

import (
	"bufio"
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/drivers"
)

//go:embed report.html.tmpl
var reportTemplateText string

// reportTemplate is parsed once; html/template escapes every value for its
// context (text, attribute), so an alarm text or a name typed on a phone
// cannot inject markup into the report.
var reportTemplate = template.Must(template.New("report").Parse(reportTemplateText))

// WriteHTML writes the session report: one self-contained HTML page (inline
// CSS and SVG, no script, no external resource; a Content-Security-Policy
// meta tag forbids both) with the session's times, route and doses, trend
// charts of SpO2, pulse, systolic and diastolic with dose markers, alarm
// bands and baseline lines, a min/max table, the alarm list with
// acknowledgements and the end-of-session check (README.md, "HTML report").
//
// Times are shown in the location of s.Started: pass times in the clinic's
// time zone (t.In(loc)) for local times; the zone is printed on the page.
func WriteHTML(w io.Writer, s Session) error {
	if err := validate(&s); err != nil {
		return err
	}
	data := newReportData(&s)
	view := data.view()
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := reportTemplate.Execute(bw, view); err != nil {
		return err
	}
	return bw.Flush()
}

// reportData is the session prepared for the report.
type reportData struct {
	session  *Session
	loc      *time.Location
	readings []drivers.Reading
	leftOut  map[string]int
	doses    []time.Time
	axis     timeAxis
	alarms   []occurrence
	orphans  []Ack // acknowledgements that match no alarm occurrence
}

// occurrence is one alarm occurrence (one EventID): its start, updates and
// end folded together.
type occurrence struct {
	AlarmID, EventID string
	Kind             alarm.Kind
	Priority         alarm.Priority // the highest the occurrence reached
	Marker           string
	Metric, Device   string
	Text             string // the start's text, or the escalation's
	Start            time.Time
	End              *time.Time // nil while it lasts
	Acks             []Ack
}

func newReportData(s *Session) *reportData {
	sel := selectReadings(s.Readings)
	d := &reportData{
		session:  s,
		loc:      s.Started.Location(),
		readings: sel.readings,
		leftOut:  sel.leftOut,
		doses:    sortedTimes(s.Doses),
	}
	d.axis = sessionAxis(s, sel.readings)
	d.alarms, d.orphans = occurrences(s.Alarms, s.Acknowledgements)
	return d
}

// sessionAxis is the charts' time range: from the start to the end of the
// session, or to the latest thing recorded while it still runs. A range
// shorter than a minute (a session just started, or an end before the
// start after a clock step) is widened so the charts stay drawable.
func sessionAxis(s *Session, readings []drivers.Reading) timeAxis {
	from := s.Started
	to := from
	if s.Ended != nil {
		to = *s.Ended
	} else {
		if n := len(readings); n > 0 {
			to = maxTime(to, readings[n-1].Received)
		}
		for _, d := range s.Doses {
			to = maxTime(to, d)
		}
		for _, e := range s.Alarms {
			to = maxTime(to, e.Sent)
		}
	}
	if to.Sub(from) < time.Minute {
		to = from.Add(time.Minute)
	}
	return timeAxis{from: from, to: to}
}

// occurrences folds alarm events into occurrences (by EventID; by AlarmID
// and onset for an event without one) and attaches each acknowledgement to
// its occurrence: by EventID, else by AlarmID and time.
func occurrences(events []alarm.Event, acks []Ack) ([]occurrence, []Ack) {
	byKey := map[string]*occurrence{}
	var order []*occurrence
	for _, e := range sortedEvents(events) {
		key := "e:" + e.EventID
		if e.EventID == "" {
			key = "a:" + e.AlarmID + "@" + e.Onset.String()
		}
		o := byKey[key]
		start := e.Onset
		if start.IsZero() {
			start = e.Sent
		}
		if o == nil {
			o = &occurrence{AlarmID: e.AlarmID, EventID: e.EventID, Kind: e.Kind, Metric: e.Metric, Device: e.Device, Start: start}
			byKey[key] = o
			order = append(order, o)
		}
		if start.Before(o.Start) {
			o.Start = start
		}
		// The text that says what the alarm was: the start's, replaced
		// only by an escalation's (not by the end's "back to 93 %").
		if e.Text != "" && (o.Text == "" || e.Priority > o.Priority) {
			o.Text = e.Text
		}
		if e.Priority > o.Priority {
			o.Priority = e.Priority
		}
		if e.Phase == alarm.PhaseEnd {
			end := e.Sent
			o.End = &end
		}
	}
	for _, o := range order {
		o.Marker = o.Priority.Marker()
	}
	var orphans []Ack
	for _, a := range sortedAcks(acks) {
		var match *occurrence
		if a.EventID != "" {
			match = byKey["e:"+a.EventID]
		}
		if match == nil {
			for _, o := range order {
				if o.AlarmID == a.AlarmID && !a.At.Before(o.Start) && (o.End == nil || !a.At.After(*o.End)) {
					match = o
					break
				}
			}
		}
		if match == nil {
			orphans = append(orphans, a)
			continue
		}
		match.Acks = append(match.Acks, a)
	}
	out := make([]occurrence, len(order))
	for i, o := range order {
		out[i] = *o
	}
	slices.SortStableFunc(out, func(a, b occurrence) int { return a.Start.Compare(b.Start) })
	return out, orphans
}

// The page's view model.
type (
	reportView struct {
		Title           string
		ID, Site, Room  string
		Route           string
		Zone            string
		Started, Ended  string
		Running         bool
		Duration        string
		Doses           []doseView
		Baseline        []baselineRow
		BaselineWarning string
		Charts          []chartView
		Stats           []statRow
		Alarms          []alarmRow
		OrphanAcks      []ackView
		Check           *checkView
		LeftOut         []leftOutRow
	}
	doseView    struct{ N, At, Offset string }
	baselineRow struct{ Metric, Value, Unit, At, Device string }
	statRow     struct {
		Metric, Unit           string
		Valid, Invalid         int
		Min, MinAt, Max, MaxAt string
		Baseline               string
	}
	alarmRow struct {
		Priority, Marker, Kind string
		Text, Device           string
		Start, End, Duration   string
		Acks                   []ackView
	}
	ackView   struct{ AlarmID, By, Via, At string }
	checkView struct {
		At          string
		Metrics     []checkRow
		Observation string
		LongEnough  bool
		Result      string
	}
	checkRow   struct{ Metric, Baseline, Final, Unit, Verdict string }
	leftOutRow struct {
		Metric string
		Count  int
	}
)

func (d *reportData) clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(d.loc).Format("15:04:05")
}

func (d *reportData) dateTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(d.loc).Format("2006-01-02 15:04:05")
}

// relative says where t lies against the first dose: "T+38 min".
func (d *reportData) relative(t time.Time) string {
	if len(d.doses) == 0 {
		return ""
	}
	off := t.Sub(d.doses[0])
	sign := "+"
	if off < 0 {
		sign, off = "−", -off
	}
	return "T" + sign + humanDuration(off)
}

// humanDuration writes "2 h 05 min", "38 min", "45 s".
func humanDuration(dur time.Duration) string {
	if dur < 0 {
		dur = -dur
	}
	switch {
	case dur < time.Minute:
		return strconv.Itoa(int(dur/time.Second)) + " s"
	case dur < time.Hour:
		return strconv.Itoa(int(dur/time.Minute)) + " min"
	}
	return fmt.Sprintf("%d h %02d min", int(dur/time.Hour), int(dur%time.Hour/time.Minute))
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func optionalValue(p *float64) string {
	if p = finite(p); p == nil {
		return "missing"
	}
	return formatValue(*p)
}

func (d *reportData) view() reportView {
	s := d.session
	v := reportView{
		Title:           "Session report: room " + s.Room + ", session " + s.ID,
		ID:              s.ID,
		Site:            s.Site,
		Room:            s.Room,
		Route:           s.Route,
		Started:         d.dateTime(s.Started),
		BaselineWarning: s.BaselineWarning,
	}
	if v.Route == "" {
		v.Route = "not recorded"
	}
	name, offset := s.Started.In(d.loc).Zone()
	v.Zone = fmt.Sprintf("%s (UTC%+03d:%02d)", name, offset/3600, abs(offset%3600)/60)
	if s.Ended != nil {
		v.Ended = d.dateTime(*s.Ended)
		v.Duration = humanDuration(s.Ended.Sub(s.Started))
	} else {
		v.Running = true
	}
	for i, t := range d.doses {
		dv := doseView{N: strconv.Itoa(i + 1), At: d.dateTime(t), Offset: "T0"}
		if i > 0 {
			dv.Offset = d.relative(t)
		}
		v.Doses = append(v.Doses, dv)
	}
	for _, name := range baselineMetrics(s.Baseline) {
		b := s.Baseline[name]
		val := b.Value
		v.Baseline = append(v.Baseline, baselineRow{
			Metric: labelOfName(name), Value: optionalValue(&val), Unit: unitOf(name, b.Unit),
			At: d.dateTime(b.At), Device: b.Device,
		})
	}
	for _, spec := range chartSpecs {
		v.Charts = append(v.Charts, buildChart(spec, d))
	}
	v.Stats = d.stats()
	for _, o := range d.alarms {
		row := alarmRow{
			Priority: o.Priority.String(), Marker: o.Marker, Kind: string(o.Kind),
			Text: o.Text, Device: o.Device,
			Start: d.clock(o.Start) + rel(d.relative(o.Start)),
			End:   "ongoing at the end of the record",
		}
		if o.End != nil {
			row.End = d.clock(*o.End)
			row.Duration = humanDuration(o.End.Sub(o.Start))
		}
		for _, a := range o.Acks {
			row.Acks = append(row.Acks, ackView{AlarmID: a.AlarmID, By: a.By, Via: a.Via, At: d.clock(a.At)})
		}
		v.Alarms = append(v.Alarms, row)
	}
	for _, a := range d.orphans {
		v.OrphanAcks = append(v.OrphanAcks, ackView{AlarmID: a.AlarmID, By: a.By, Via: a.Via, At: d.clock(a.At)})
	}
	if c := s.Check; c != nil {
		cv := &checkView{At: d.dateTime(c.At), LongEnough: c.ObservationLongEnough, Result: c.Result}
		cv.Observation = humanDuration(c.Observed) + " after the first dose"
		if len(d.doses) == 0 {
			cv.Observation = "no dose recorded"
		}
		if c.MinObservation > 0 {
			cv.Observation += " (minimum " + humanDuration(c.MinObservation) + ")"
		}
		for _, m := range c.Metrics {
			row := checkRow{
				Metric: labelOfName(m.Metric), Baseline: optionalValue(m.Baseline), Final: optionalValue(m.Final),
				Unit: unitOf(m.Metric, m.Unit), Verdict: "outside tolerance",
			}
			switch {
			case finite(m.Baseline) == nil || finite(m.Final) == nil:
				row.Verdict = "not compared: value missing"
			case m.WithinTolerance:
				row.Verdict = "within tolerance"
			}
			cv.Metrics = append(cv.Metrics, row)
		}
		v.Check = cv
	}
	for _, name := range sortedKeys(d.leftOut) {
		v.LeftOut = append(v.LeftOut, leftOutRow{Metric: name, Count: d.leftOut[name]})
	}
	return v
}

func rel(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// stats is the min/max table: every exported metric with a reading.
func (d *reportData) stats() []statRow {
	type acc struct {
		valid, invalid int
		min, max       valuePoint
	}
	accs := map[drivers.MetricID]*acc{}
	for i := range d.readings {
		r := &d.readings[i]
		a := accs[r.Metric]
		if a == nil {
			a = &acc{min: valuePoint{v: math.Inf(1)}, max: valuePoint{v: math.Inf(-1)}}
			accs[r.Metric] = a
		}
		if !usable(r) {
			a.invalid++
			continue
		}
		a.valid++
		if r.Value < a.min.v {
			a.min = valuePoint{r.Received, r.Value}
		}
		if r.Value > a.max.v {
			a.max = valuePoint{r.Received, r.Value}
		}
	}
	present := map[drivers.MetricID]bool{}
	for id := range accs {
		present[id] = true
	}
	var rows []statRow
	for _, id := range sortedMetricIDs(present) {
		a := accs[id]
		info := id.Info()
		row := statRow{Metric: metricLabel(id), Unit: info.Unit, Valid: a.valid, Invalid: a.invalid,
			Min: "—", Max: "—", Baseline: "—"}
		if a.valid > 0 {
			row.Min, row.MinAt = formatValue(a.min.v), d.clock(a.min.at)
			row.Max, row.MaxAt = formatValue(a.max.v), d.clock(a.max.at)
		}
		if b, ok := d.session.Baseline[info.Name]; ok {
			row.Baseline = optionalValue(&b.Value)
		}
		rows = append(rows, row)
	}
	return rows
}

func labelOfName(name string) string {
	if id, ok := drivers.MetricByName(name); ok {
		return metricLabel(id)
	}
	return name
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp.Compare[string])
	return keys
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}
