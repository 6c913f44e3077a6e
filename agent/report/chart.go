package report

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/drivers"
)

// Chart geometry, in SVG user units (the SVG scales to the page width).
const (
	chartWidth  = 960
	chartHeight = 230
	plotLeft    = 52
	plotRight   = 14
	plotTop     = 12
	plotBottom  = 30
	plotWidth   = chartWidth - plotLeft - plotRight
	plotHeight  = chartHeight - plotTop - plotBottom
)

// continuousGap is the longest pause between two valid readings of a
// continuous metric (1 Hz or faster, drivers.Metric.Continuous) that is
// still drawn as one line: a longer pause, or an invalid reading, breaks
// the line so a sensor-off period shows as a gap and never as a value
// (clinical.md 6: a stale value must never look live).
const continuousGap = 10 * time.Second

// chartSpec describes one trend chart of the report.
type chartSpec struct {
	class  string // the SVG's stable class name, e.g. "chart-spo2"
	metric drivers.MetricID
	// alarmMetrics are the alarm metrics drawn as bands on this chart.
	alarmMetrics []string
	// lo and hi are the y range shown at least; data and baseline widen it.
	lo, hi float64
}

var chartSpecs = []chartSpec{
	{class: "chart-spo2", metric: drivers.SpO2, alarmMetrics: []string{"spo2"}, lo: 85, hi: 100},
	{class: "chart-pulse", metric: drivers.PulseRate, alarmMetrics: []string{"pulse_rate", "nibp_pulse_rate"}, lo: 50, hi: 120},
	{class: "chart-systolic", metric: drivers.NIBPSystolic, alarmMetrics: []string{"nibp_systolic"}, lo: 90, hi: 160},
	{class: "chart-diastolic", metric: drivers.NIBPDiastolic, alarmMetrics: []string{"nibp_diastolic"}, lo: 50, hi: 100},
}

// chartedAlarmMetric reports whether an alarm metric has a chart of its
// own; alarms of other metrics (technical ones without a metric, perfusion,
// mean pressure) are drawn on every chart.
func chartedAlarmMetric(metric string) bool {
	for _, c := range chartSpecs {
		for _, m := range c.alarmMetrics {
			if m == metric {
				return true
			}
		}
	}
	return false
}

// The chart's view model: every number already formatted for the template.
type (
	chartView struct {
		Class, Title, Unit string
		Width, Height      int
		PlotX, PlotY       string
		PlotW, PlotH       string
		PlotRight          string
		PlotBottom         string
		Bands              []bandView
		GridY              []tickView
		TicksX             []tickView
		Baselines          []baselineLineView
		Lines              []string // polyline points
		Points             []pointView
		Doses              []doseMarkerView
		Empty              bool
		EmptyX, EmptyY     string
	}
	bandView struct {
		X, Y, W, H string
		Priority   string // high, medium, low: CSS class and colour
		Fill       string
		Title      string
	}
	tickView struct {
		Pos, Label string // y (grid) or x (time tick), in user units
	}
	baselineLineView struct {
		Y, Label, LabelY string
	}
	pointView struct {
		X, Y, Title string
	}
	doseMarkerView struct {
		X, Label string
	}
)

// priorityFill is the band colour per priority: red, yellow, cyan as
// clinical.md 1 gives them (IEC 60601-1-8).
func priorityFill(p alarm.Priority) string {
	switch p {
	case alarm.High:
		return "#d32f2f"
	case alarm.Medium:
		return "#f9a825"
	case alarm.Low:
		return "#00acc1"
	}
	return "#9e9e9e"
}

// timeAxis maps times of the session's range to x.
type timeAxis struct {
	from, to time.Time
}

func (a timeAxis) x(t time.Time) float64 {
	span := a.to.Sub(a.from).Seconds()
	return plotLeft + plotWidth*t.Sub(a.from).Seconds()/span
}

func (a timeAxis) contains(t time.Time) bool { return !t.Before(a.from) && !t.After(a.to) }

// valueAxis maps values to y.
type valueAxis struct{ lo, hi float64 }

func (a valueAxis) y(v float64) float64 {
	return plotTop + plotHeight*(a.hi-v)/(a.hi-a.lo)
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// valuePoint is one valid value at an agent time.
type valuePoint struct {
	at time.Time
	v  float64
}

// series collects a metric's valid values in time order, split into the
// runs that may be joined by a line.
func series(readings []drivers.Reading, id drivers.MetricID, axis timeAxis) [][]valuePoint {
	continuous := id.Info().Continuous
	var runs [][]valuePoint
	var cur []valuePoint
	flush := func() {
		if len(cur) > 0 {
			runs = append(runs, cur)
			cur = nil
		}
	}
	for i := range readings {
		r := &readings[i]
		if r.Metric != id || !axis.contains(r.Received) {
			continue
		}
		if !usable(r) {
			if continuous {
				flush()
			}
			continue
		}
		if continuous && len(cur) > 0 && r.Received.Sub(cur[len(cur)-1].at) > continuousGap {
			flush()
		}
		cur = append(cur, valuePoint{r.Received, r.Value})
	}
	flush()
	return runs
}

// niceStep picks a grid step of 1, 2, 2.5 or 5 times a power of ten that
// gives at most about six lines over span.
func niceStep(span float64) float64 {
	raw := span / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// timeSteps are the spacings tried for time ticks, shortest first.
var timeSteps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// buildChart lays out one chart over the session's time range.
func buildChart(spec chartSpec, v *reportData) chartView {
	info := spec.metric.Info()
	cv := chartView{
		Class: spec.class, Title: metricLabel(spec.metric), Unit: info.Unit,
		Width: chartWidth, Height: chartHeight,
		PlotX: num(plotLeft), PlotY: num(plotTop), PlotW: num(plotWidth), PlotH: num(plotHeight),
		PlotRight: num(plotLeft + plotWidth), PlotBottom: num(plotTop + plotHeight),
	}
	axis := v.axis
	runs := series(v.readings, spec.metric, axis)

	// y range: the spec's, widened to the data and the baseline.
	lo, hi := spec.lo, spec.hi
	for _, run := range runs {
		for _, p := range run {
			lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
		}
	}
	base, hasBase := v.session.Baseline[info.Name]
	hasBase = hasBase && !math.IsNaN(base.Value) && !math.IsInf(base.Value, 0)
	if hasBase {
		lo, hi = math.Min(lo, base.Value), math.Max(hi, base.Value)
	}
	step := niceStep(hi - lo)
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	if hi <= lo {
		hi = lo + step
	}
	ya := valueAxis{lo, hi}
	for g := lo; g <= hi+step/1e6; g += step {
		cv.GridY = append(cv.GridY, tickView{Pos: num(ya.y(g)), Label: strconv.FormatFloat(g, 'f', -1, 64)})
	}

	// Time ticks at round local times.
	span := axis.to.Sub(axis.from)
	tickStep := timeSteps[len(timeSteps)-1]
	for _, s := range timeSteps {
		if span/s <= 10 {
			tickStep = s
			break
		}
	}
	loc := v.loc
	first := axis.from.In(loc).Truncate(tickStep)
	if first.Before(axis.from) {
		first = first.Add(tickStep)
	}
	for t := first; !t.After(axis.to); t = t.Add(tickStep) {
		cv.TicksX = append(cv.TicksX, tickView{Pos: num(axis.x(t)), Label: t.In(loc).Format("15:04")})
	}

	// Alarm bands.
	for _, o := range v.alarms {
		if o.Metric != "" && chartedAlarmMetric(o.Metric) && !contains(spec.alarmMetrics, o.Metric) {
			continue
		}
		start, end := o.Start, axis.to
		if o.End != nil {
			end = *o.End
		}
		if end.Before(axis.from) || start.After(axis.to) {
			continue
		}
		x1 := axis.x(maxTime(start, axis.from))
		x2 := axis.x(minTime(end, axis.to))
		w := math.Max(x2-x1, 2) // a short alarm stays visible
		cv.Bands = append(cv.Bands, bandView{
			X: num(x1), Y: num(plotTop), W: num(w), H: num(plotHeight),
			Priority: o.Priority.String(), Fill: priorityFill(o.Priority),
			Title: bandTitle(o, loc),
		})
	}

	if hasBase {
		y := ya.y(base.Value)
		cv.Baselines = append(cv.Baselines, baselineLineView{
			Y: num(y), LabelY: num(y - 3),
			Label: "baseline " + strconv.FormatFloat(base.Value, 'f', -1, 64) + " " + unitOf(info.Name, base.Unit),
		})
	}

	// Lines: runs of two or more points; a lone point and every discrete
	// (NIBP) value also get a dot with its value.
	for _, run := range runs {
		if len(run) > 1 {
			cv.Lines = append(cv.Lines, polylinePoints(run, axis, ya))
		}
		if len(run) == 1 || !info.Continuous {
			for _, p := range run {
				cv.Points = append(cv.Points, pointView{
					X: num(axis.x(p.at)), Y: num(ya.y(p.v)),
					Title: strconv.FormatFloat(p.v, 'f', -1, 64) + " " + info.Unit + " at " + p.at.In(loc).Format("15:04:05"),
				})
			}
		}
	}
	if len(runs) == 0 {
		cv.Empty = true
		cv.EmptyX, cv.EmptyY = num(plotLeft+plotWidth/2), num(plotTop+plotHeight/2)
	}

	for i, d := range v.doses {
		if !axis.contains(d) {
			continue
		}
		cv.Doses = append(cv.Doses, doseMarkerView{X: num(axis.x(d)), Label: "dose " + strconv.Itoa(i+1)})
	}
	return cv
}

// polylinePoints formats a run as SVG points. A run longer than two points
// per pixel column keeps, per column, the first minimum and maximum in time
// order: a 2-hour 1 Hz trace shrinks about fourfold and a brief
// desaturation still shows its full depth.
func polylinePoints(run []valuePoint, axis timeAxis, ya valueAxis) string {
	var b strings.Builder
	b.Grow(len(run) * 12)
	buf := make([]byte, 0, 16)
	emit := func(p valuePoint) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		buf = strconv.AppendFloat(buf[:0], axis.x(p.at), 'f', 1, 64)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, ya.y(p.v), 'f', 1, 64)
		b.Write(buf)
	}
	if len(run) <= 2*plotWidth {
		for _, p := range run {
			emit(p)
		}
		return b.String()
	}
	col := -1
	var lo, hi int // indexes of the column's min and max
	flushCol := func() {
		if col < 0 {
			return
		}
		if lo == hi {
			emit(run[lo])
		} else if lo < hi {
			emit(run[lo])
			emit(run[hi])
		} else {
			emit(run[hi])
			emit(run[lo])
		}
	}
	for i, p := range run {
		c := int(axis.x(p.at))
		if c != col {
			flushCol()
			col, lo, hi = c, i, i
			continue
		}
		if p.v < run[lo].v {
			lo = i
		}
		if p.v > run[hi].v {
			hi = i
		}
	}
	flushCol()
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// bandTitle is the hover text of an alarm band: the alarm's text, which
// starts with its priority marker, and its times.
func bandTitle(o occurrence, loc *time.Location) string {
	t := o.Text
	if !strings.HasPrefix(t, o.Marker) {
		t = o.Marker + " " + t
	}
	end := "ongoing"
	if o.End != nil {
		end = o.End.In(loc).Format("15:04:05")
	}
	return t + " (" + o.Start.In(loc).Format("15:04:05") + " to " + end + ")"
}
