package report

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/drivers"
)

// page is a parsed report with small query helpers.
type page struct{ root *html.Node }

func parsePage(t *testing.T, s Session) page {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(render(t, htmlOf, s)))
	if err != nil {
		t.Fatal(err)
	}
	return page{doc}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return slices.Contains(strings.Fields(attr(n, "class")), class)
}

// all returns the element nodes under n that match.
func all(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			out = append(out, d)
		}
	}
	return out
}

func byClass(class string) func(*html.Node) bool {
	return func(n *html.Node) bool { return hasClass(n, class) }
}

func byTag(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == tag }
}

func byID(id string) func(*html.Node) bool {
	return func(n *html.Node) bool { return attr(n, "id") == id }
}

func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return b.String()
}

func (p page) one(t *testing.T, match func(*html.Node) bool, what string) *html.Node {
	t.Helper()
	found := all(p.root, match)
	if len(found) != 1 {
		t.Fatalf("%d elements %s, want 1", len(found), what)
	}
	return found[0]
}

func TestHTMLReport(t *testing.T) {
	p := parsePage(t, smallSession())

	title := text(p.one(t, func(n *html.Node) bool { return n.Data == "title" && n.Parent.Data == "head" }, "<title>"))
	if !strings.Contains(title, "room-1") || !strings.Contains(title, "s-fixture0000000001") {
		t.Errorf("title %q lacks room and session id", title)
	}
	if got := text(p.one(t, byID("route"), "#route")); got != "im" {
		t.Errorf("route %q", got)
	}
	if got := text(p.one(t, byID("started"), "#started")); got != "2025-03-14 09:00:00" {
		t.Errorf("started %q", got)
	}
	if got := text(p.one(t, byID("ended"), "#ended")); !strings.Contains(got, "2025-03-14 11:05:00") || !strings.Contains(got, "2 h 05 min") {
		t.Errorf("ended %q", got)
	}
	if got := text(p.one(t, byID("doses"), "#doses")); !strings.Contains(got, "dose 1: 2025-03-14 09:10:00 (T0)") {
		t.Errorf("doses %q", got)
	}

	// The four charts, each with its dose marker and baseline line.
	for _, c := range []string{"chart-spo2", "chart-pulse", "chart-systolic", "chart-diastolic"} {
		svg := p.one(t, func(n *html.Node) bool { return n.Data == "svg" && hasClass(n, c) }, c)
		if n := len(all(svg, byClass("dose-marker"))); n != 1 {
			t.Errorf("%s: %d dose markers, want 1", c, n)
		}
		if n := len(all(svg, byClass("baseline-line"))); n != 1 {
			t.Errorf("%s: %d baseline lines, want 1", c, n)
		}
	}
	chart := func(c string) *html.Node {
		return p.one(t, func(n *html.Node) bool { return n.Data == "svg" && hasClass(n, c) }, c)
	}

	// SpO2: 98 at 1 s, then a sensor-off reading and a NaN break the line,
	// 96.5 at 4 s stands alone, 97 two hours later: no line may join values
	// across the invalid readings, so no polyline at all, three dots.
	spo2 := chart("chart-spo2")
	if n := len(all(spo2, byTag("polyline"))); n != 0 {
		t.Errorf("chart-spo2: %d polylines across invalid readings", n)
	}
	if n := len(all(spo2, byTag("circle"))); n != 3 {
		t.Errorf("chart-spo2: %d points, want 3", n)
	}
	// Systolic: two measurements joined by a line, each with a dot.
	sys := chart("chart-systolic")
	if n := len(all(sys, byTag("polyline"))); n != 1 {
		t.Errorf("chart-systolic: %d polylines, want 1", n)
	}
	if n := len(all(sys, byTag("circle"))); n != 2 {
		t.Errorf("chart-systolic: %d points, want 2", n)
	}

	// Alarm bands: the SpO2 alarm on the SpO2 chart, the systolic one
	// (escalated to high, still active) on the systolic chart.
	bands := func(c string) []*html.Node { return all(chart(c), byClass("alarm-band")) }
	if b := bands("chart-spo2"); len(b) != 1 || !hasClass(b[0], "alarm-medium") {
		t.Errorf("chart-spo2 bands %d", len(b))
	}
	if b := bands("chart-systolic"); len(b) != 1 || !hasClass(b[0], "alarm-high") || attr(b[0], "fill") != "#d32f2f" {
		t.Errorf("chart-systolic bands: want one high (red) band")
	}
	if b := bands("chart-pulse"); len(b) != 0 {
		t.Errorf("chart-pulse has %d bands", len(b))
	}

	// Min/max table.
	stats := text(p.one(t, byID("stats"), "#stats"))
	for _, want := range []string{"SpO2", "96.5", "98", "NIBP systolic", "176", "128"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats table lacks %q: %s", want, stats)
		}
	}

	// Alarm list with priority markers and acknowledgements.
	rows := all(p.one(t, byID("alarms"), "#alarms"), byClass("alarm"))
	if len(rows) != 2 {
		t.Fatalf("%d alarm rows, want 2 occurrences", len(rows))
	}
	r0, r1 := text(rows[0]), text(rows[1])
	if !strings.Contains(r0, "SpO2 89 % below 90 %") {
		t.Errorf("SpO2 alarm row shows %q, want the start's text", r0)
	}
	if !strings.Contains(r1, "escalated") {
		t.Errorf("escalated alarm row shows %q, want the escalation's text", r1)
	}
	if !strings.Contains(r0, "** medium") || !strings.Contains(r0, "by RN Kim via phone link at 09:31:00") || !strings.Contains(r0, "09:33:00") {
		t.Errorf("SpO2 alarm row %q", r0)
	}
	if !strings.Contains(r1, "*** high") || !strings.Contains(r1, "ongoing") || !strings.Contains(r1, "not acknowledged") ||
		!strings.Contains(r1, "T+40 min") {
		t.Errorf("systolic alarm row %q", r1)
	}
	if got := text(p.one(t, byID("orphan-acks"), "#orphan-acks")); !strings.Contains(got, "Dr Lee") {
		t.Errorf("unmatched acknowledgement missing: %q", got)
	}

	// End-of-session check.
	check := text(p.one(t, byID("check"), "#check"))
	for _, want := range []string{"SpO2", "within tolerance", "outside tolerance", "not compared: value missing"} {
		if !strings.Contains(check, want) {
			t.Errorf("check table lacks %q: %s", want, check)
		}
	}
	if got := text(p.one(t, byID("check-result"), "#check-result")); !strings.Contains(got, "check failed") {
		t.Errorf("check result %q", got)
	}
	if got := text(p.one(t, byID("left-out"), "#left-out")); !strings.Contains(got, "pleth 1") {
		t.Errorf("left-out note %q", got)
	}
}

// Self-contained: no script, no external fetch of any kind.
func TestHTMLSelfContained(t *testing.T) {
	p := parsePage(t, longSession(30*time.Minute))
	if n := len(all(p.root, byTag("script"))); n != 0 {
		t.Errorf("%d scripts", n)
	}
	for _, n := range all(p.root, func(*html.Node) bool { return true }) {
		for _, a := range n.Attr {
			switch {
			case a.Key == "src" || a.Key == "href" || a.Key == "xlink:href" || strings.HasPrefix(a.Key, "on"):
				t.Errorf("<%s %s=%q>", n.Data, a.Key, a.Val)
			case a.Key == "xmlns":
			case strings.Contains(a.Val, "url(") || strings.Contains(a.Val, "http"):
				t.Errorf("<%s %s=%q> refers to something outside the page", n.Data, a.Key, a.Val)
			}
		}
		if n.Data == "link" || n.Data == "iframe" || n.Data == "img" || n.Data == "object" {
			t.Errorf("element <%s>", n.Data)
		}
	}
	csp := p.one(t, func(n *html.Node) bool { return n.Data == "meta" && attr(n, "http-equiv") == "Content-Security-Policy" }, "CSP meta")
	if !strings.Contains(attr(csp, "content"), "default-src 'none'") {
		t.Errorf("CSP %q", attr(csp, "content"))
	}
	style := text(p.one(t, byTag("style"), "<style>"))
	if strings.Contains(style, "url(") || strings.Contains(style, "@import") {
		t.Error("CSS fetches something")
	}
}

// Text from outside (an alarm's text, a name typed on a phone) is escaped,
// never markup.
func TestHTMLEscapes(t *testing.T) {
	s := smallSession()
	s.Alarms[0].Text = `<script>alert("x")</script>`
	s.Alarms[1].Text = `<script>alert("x")</script>`
	s.Alarms[2].Text = `<script>alert("x")</script>`
	s.Acknowledgements[0].By = `<img src=x onerror=alert(1)>`
	s.Room = `"><svg onload=alert(1)>`
	p := parsePage(t, s)
	if n := len(all(p.root, byTag("script"))); n != 0 {
		t.Fatalf("%d script elements: text was not escaped", n)
	}
	if n := len(all(p.root, byTag("img"))); n != 0 {
		t.Fatalf("%d img elements: the acknowledging name was not escaped", n)
	}
	if got := text(p.one(t, byID("alarms"), "#alarms")); !strings.Contains(got, `<script>alert("x")</script>`) ||
		!strings.Contains(got, "<img src=x onerror=alert(1)>") {
		t.Errorf("the texts are not shown as text: %q", got)
	}
	if n := len(all(p.root, byTag("svg"))); n != 4 {
		t.Errorf("%d svg elements, want the 4 charts", n)
	}
}

// A running session, an ended-before-started clock step, alarms without
// event ids, unknown metrics, and empty data all render.
func TestHTMLOddSessions(t *testing.T) {
	running := smallSession()
	running.Ended = nil
	running.Check = nil
	p := parsePage(t, running)
	if got := text(p.one(t, byID("ended"), "#ended")); !strings.Contains(got, "still running") {
		t.Errorf("ended %q", got)
	}
	if got := text(p.one(t, byID("check-result"), "#check-result")); !strings.Contains(got, "No end-of-session check") {
		t.Errorf("check %q", got)
	}

	backwards := smallSession()
	e := backwards.Started.Add(-time.Hour)
	backwards.Ended = &e
	backwards.Readings = append(backwards.Readings,
		drivers.Reading{Device: "x", Metric: drivers.MetricUnknown, Value: 1, Valid: true, Received: t0},
		drivers.Reading{Device: "x", Metric: drivers.MetricID(200), Value: 1, Valid: true, Received: t0})
	backwards.Alarms = append(backwards.Alarms, alarm.Event{AlarmID: "device-lost/x", Phase: alarm.PhaseStart,
		Kind: alarm.Technical, Priority: alarm.High, Text: "*** device lost", Sent: t0})
	backwards.Doses = append(backwards.Doses, t0.Add(-time.Hour))
	p = parsePage(t, backwards)
	if got := text(p.one(t, byID("left-out"), "#left-out")); !strings.Contains(got, "unknown 2") {
		t.Errorf("left-out %q", got)
	}
	// The technical alarm without a metric is drawn on every chart.
	if n := len(all(p.root, byClass("alarm-band"))); n < 4 {
		t.Errorf("%d bands, want the technical alarm on all 4 charts", n)
	}

	empty := Session{ID: "s-empty", Started: t0}
	p = parsePage(t, empty)
	if n := len(all(p.root, byClass("empty"))); n != 4 {
		t.Errorf("%d charts say there are no readings, want 4", n)
	}
}

// A 2-hour 1 Hz trace is thinned per pixel column but keeps the depth of a
// desaturation.
func TestHTMLDecimationKeepsExtremes(t *testing.T) {
	s := longSession(2 * time.Hour)
	p := parsePage(t, s)
	spo2 := p.one(t, func(n *html.Node) bool { return n.Data == "svg" && hasClass(n, "chart-spo2") }, "chart-spo2")
	lines := all(spo2, byTag("polyline"))
	if len(lines) != 2 { // broken by the minute of sensor off
		t.Fatalf("%d polylines, want 2", len(lines))
	}
	total := 0
	for _, l := range lines {
		total += len(strings.Fields(attr(l, "points")))
	}
	if total > 4*plotWidth || total < plotWidth {
		t.Errorf("%d points for %d px: not thinned per pixel column", total, plotWidth)
	}
	// The lowest point drawn must be the desaturation's minimum (86 %).
	d := newReportData(&s)
	cv := buildChart(chartSpecs[0], d)
	ya := valueAxis{}
	lo, _ := parseNum(cv.GridY[0].Label)
	hi, _ := parseNum(cv.GridY[len(cv.GridY)-1].Label)
	ya.lo, ya.hi = lo, hi
	maxY := 0.0
	for _, l := range lines {
		for _, pt := range strings.Fields(attr(l, "points")) {
			y, _ := parseNum(pt[strings.IndexByte(pt, ',')+1:])
			maxY = max(maxY, y)
		}
	}
	if want := ya.y(86); maxY < want-0.2 || maxY > want+0.2 {
		t.Errorf("lowest point drawn at y=%.1f, want the 86 %% minimum at y=%.1f", maxY, want)
	}
}

func parseNum(s string) (float64, error) { return strconv.ParseFloat(s, 64) }
