package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

func TestMain(m *testing.M) {
	// The SDK needs its panel and query plugins registered to decode
	// panels' options and targets (ecosystem.md, Grafana SDK).
	plugins.RegisterDefaultPlugins()
	// paho closes its router goroutine asynchronously after Disconnect
	// (the agent's own tests ignore it too).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch.func1"))
}

const jsonDir = "json"

// buildErrors turns the SDK's error into nil on success: its strict
// decoders return a cog.BuildErrors of length 0, a non-nil error with
// empty text, when all is well (ecosystem.md).
func buildErrors(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// decodeStrict checks a committed dashboard with the SDK's strict decoder
// (unknown fields, wrong types and missing required fields are errors) and
// returns it decoded.
//
// The strict decoder of v0.0.22 checks every panel and query but keeps
// none: PanelOrRowPanel and the query variants stop at their parts'
// empty-but-non-nil error, so the panels come back empty. The dashboard
// returned is therefore decoded a second time by the ordinary decoder,
// and checked to hold every panel and query of the file.
func decodeStrict(t *testing.T, name string) dashboard.Dashboard {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(jsonDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var strict dashboard.Dashboard
	if err := buildErrors(strict.UnmarshalJSONStrict(raw)); err != nil {
		t.Fatalf("%s does not decode strictly: %v", name, err)
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var generic struct {
		Panels []struct {
			Targets []json.RawMessage `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if len(d.Panels) != len(generic.Panels) {
		t.Fatalf("%s: %d panels decoded of %d", name, len(d.Panels), len(generic.Panels))
	}
	for i, p := range d.Panels {
		if p.Panel == nil || len(p.Panel.Targets) != len(generic.Panels[i].Targets) {
			t.Fatalf("%s: panel %d decoded without its queries", name, i)
		}
	}
	return d
}

func shippedFiles(t *testing.T) []File {
	t.Helper()
	files, err := Build(alarm.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestCommittedJSONIsGenerated: the files in json/ are exactly what the
// generator writes with the default rules, and nothing else is there.
func TestCommittedJSONIsGenerated(t *testing.T) {
	files := shippedFiles(t)
	var want []string
	for _, f := range files {
		want = append(want, f.Name)
		generated, err := Render(f.Dashboard)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(jsonDir, f.Name))
		if err != nil {
			t.Fatalf("%s is not committed: %v (run go run ./dashboards/generate)", f.Name, err)
		}
		if !bytes.Equal(generated, committed) {
			t.Errorf("%s differs from the generator's output: run go run ./dashboards/generate from the repository root", f.Name)
		}
	}
	entries, err := os.ReadDir(jsonDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(want, e.Name()) {
			t.Errorf("json/%s is not generated: remove it or add it to Build", e.Name())
		}
	}
}

// TestDashboardsDecodeStrictlyAndValidate: every committed dashboard
// decodes with the SDK's strict decoder and passes its Validate.
func TestDashboardsDecodeStrictlyAndValidate(t *testing.T) {
	for _, f := range shippedFiles(t) {
		t.Run(f.Name, func(t *testing.T) {
			d := decodeStrict(t, f.Name)
			if err := buildErrors(d.Validate()); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if len(d.Panels) == 0 {
				t.Fatal("no panels")
			}
		})
	}
}

// TestStrictDecodingCatchesMistakes: the strict decoding above can fail:
// an unknown field, in the dashboard or in a query, is reported.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(jsonDir, "room.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func([]byte) []byte{
		"dashboard field": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"uid": "vigil-room",`), []byte(`"uid": "vigil-room", "uuid": 1,`), 1)
		},
		"query field": func(b []byte) []byte { return bytes.Replace(b, []byte(`"expr":`), []byte(`"exrp": "x", "expr":`), 1) },
		"wrong type":  func(b []byte) []byte { return bytes.Replace(b, []byte(`"refresh": "5s"`), []byte(`"refresh": 5`), 1) },
	} {
		edited := edit(raw)
		if bytes.Equal(edited, raw) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		var d dashboard.Dashboard
		if err := buildErrors(d.UnmarshalJSONStrict(edited)); err == nil {
			t.Errorf("%s: strict decoding accepted it", name)
		}
	}
}

// panelQuery is one query of a committed dashboard.
type panelQuery struct {
	dashboard, panel string
	refID, expr      string
	instant          bool
	datasource       *string
}

func (q panelQuery) String() string {
	return fmt.Sprintf("%s / %s / %s: %s", q.dashboard, q.panel, q.refID, q.expr)
}

// panelsOf flattens the dashboard's panels, those inside rows included.
func panelsOf(d dashboard.Dashboard) []dashboard.Panel {
	var out []dashboard.Panel
	for _, p := range d.Panels {
		if p.Panel != nil {
			out = append(out, *p.Panel)
		}
		if p.RowPanel != nil {
			out = append(out, p.RowPanel.Panels...)
		}
	}
	return out
}

// queriesOf returns every panel query and annotation query of the
// dashboard; it fails the test on a query that is not Prometheus's.
func queriesOf(t *testing.T, name string, d dashboard.Dashboard) []panelQuery {
	t.Helper()
	var out []panelQuery
	for _, p := range panelsOf(d) {
		title := ""
		if p.Title != nil {
			title = *p.Title
		}
		for _, target := range p.Targets {
			var q prometheus.Dataquery
			switch v := target.(type) {
			case prometheus.Dataquery:
				q = v
			case *prometheus.Dataquery:
				q = *v
			default:
				t.Fatalf("%s / %s: a %T query, not Prometheus", name, title, target)
			}
			pq := panelQuery{dashboard: name, panel: title, expr: q.Expr, instant: q.Instant != nil && *q.Instant}
			if q.RefId != nil {
				pq.refID = *q.RefId
			}
			if q.Datasource != nil {
				pq.datasource = q.Datasource.Uid
			}
			out = append(out, pq)
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn != nil && *a.BuiltIn == 1 {
			continue
		}
		if a.Expr == nil {
			t.Fatalf("%s: annotation %q has no expr", name, a.Name)
		}
		var uid *string
		if a.Datasource != nil {
			uid = a.Datasource.Uid
		}
		out = append(out, panelQuery{dashboard: name, panel: "annotation " + a.Name, refID: "anno", expr: *a.Expr, datasource: uid})
	}
	return out
}

var variableRef = regexp.MustCompile(`\$(\w+)`)

// TestDashboardsAreConsistent: what Grafana would only show as a broken
// panel: a query on another data source, duplicate ids or refIds, a
// variable that is not defined, panels off the grid or on each other.
func TestDashboardsAreConsistent(t *testing.T) {
	uids := map[string]string{}
	for _, f := range shippedFiles(t) {
		t.Run(f.Name, func(t *testing.T) {
			d := decodeStrict(t, f.Name)
			if d.Uid == nil || *d.Uid == "" {
				t.Fatal("no uid: provisioning needs a stable one")
			}
			if other, dup := uids[*d.Uid]; dup {
				t.Fatalf("uid %s also used by %s", *d.Uid, other)
			}
			uids[*d.Uid] = f.Name
			if !slices.Contains(d.Tags, tag) {
				t.Errorf("not tagged %q: the dashboards' links would miss it", tag)
			}

			defined := map[string]bool{}
			for _, v := range d.Templating.List {
				defined[v.Name] = true
				if v.Datasource == nil || v.Datasource.Uid == nil || *v.Datasource.Uid != DatasourceUID {
					t.Errorf("variable %s does not use data source %s", v.Name, DatasourceUID)
				}
			}
			for _, want := range []string{"site", "room"} {
				if !defined[want] {
					t.Errorf("no %s variable", want)
				}
			}

			ids := map[uint32]bool{}
			cells := map[[2]uint32]string{}
			for _, p := range panelsOf(d) {
				title := *p.Title
				if p.Id == nil || ids[*p.Id] {
					t.Errorf("panel %q: missing or duplicate id", title)
				} else {
					ids[*p.Id] = true
				}
				if p.Datasource == nil || p.Datasource.Uid == nil || *p.Datasource.Uid != DatasourceUID {
					t.Errorf("panel %q does not use data source %s", title, DatasourceUID)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", title)
				}
				// A stat shows the value now or nothing: an instant query
				// returns nothing once the series went stale, where a range
				// query reduced to its last value would show a frozen number.
				if p.Type == "stat" || p.Type == "table" {
					for _, target := range p.Targets {
						if q, ok := target.(*prometheus.Dataquery); !ok || q.Instant == nil || !*q.Instant || (q.Range != nil && *q.Range) {
							t.Errorf("%s %q: a query that is not instant-only", p.Type, title)
						}
					}
					if p.FieldConfig == nil || p.FieldConfig.Defaults.NoValue == nil {
						t.Errorf("%s %q: no noValue text", p.Type, title)
					}
				}
				g := p.GridPos
				if g == nil || g.W == 0 || g.H == 0 || g.X+g.W > 24 {
					t.Errorf("panel %q: bad grid position %+v", title, g)
					continue
				}
				for x := g.X; x < g.X+g.W; x++ {
					for y := g.Y; y < g.Y+g.H; y++ {
						if other, taken := cells[[2]uint32{x, y}]; taken {
							t.Errorf("panel %q overlaps %q", title, other)
							goto nextPanel
						}
						cells[[2]uint32{x, y}] = title
					}
				}
			nextPanel:
			}

			refs := map[string]bool{}
			for _, q := range queriesOf(t, f.Name, d) {
				if q.datasource == nil || *q.datasource != DatasourceUID {
					t.Errorf("%s: not on data source %s", q, DatasourceUID)
				}
				if q.refID == "" || strings.TrimSpace(q.expr) == "" {
					t.Errorf("%s: empty refId or expr", q)
				}
				key := q.panel + "/" + q.refID
				if refs[key] && q.refID != "anno" {
					t.Errorf("%s: duplicate refId", q)
				}
				refs[key] = true
				for _, m := range variableRef.FindAllStringSubmatch(q.expr, -1) {
					if !strings.HasPrefix(m[1], "__") && !defined[m[1]] {
						t.Errorf("%s: uses $%s, which the dashboard does not define", q, m[1])
					}
				}
			}
		})
	}
}

// grafanaColour is the colour Grafana gives v: that of the highest step
// at or below it, the base step (nil value) below all.
func grafanaColour(steps []dashboard.Threshold, v float64) string {
	colour := ""
	best := math.Inf(-1)
	for _, s := range steps {
		if s.Value == nil {
			if colour == "" {
				colour = s.Color
			}
			continue
		}
		if *s.Value <= v && *s.Value >= best {
			best, colour = *s.Value, s.Color
		}
	}
	return colour
}

// engineColour is the colour of v by the alarm engine's own reading of the
// rules: the highest priority of the limits v meets.
func engineColour(rules []alarm.Rule, metric string, v float64) string {
	var worst alarm.Priority
	for _, r := range rules {
		if r.Metric != metric {
			continue
		}
		if (r.AtOrBelow != nil && v <= *r.AtOrBelow) || (r.AtOrAbove != nil && v >= *r.AtOrAbove) {
			worst = max(worst, r.Priority)
		}
	}
	return priorityColour(worst)
}

// fieldThresholds finds the thresholds of a stat panel's field: the
// override for refID when there is one, else the defaults.
func fieldThresholds(t *testing.T, p dashboard.Panel, refID string) []dashboard.Threshold {
	t.Helper()
	for _, o := range p.FieldConfig.Overrides {
		if o.Matcher.Id == "byFrameRefID" && o.Matcher.Options == refID {
			for _, prop := range o.Properties {
				if prop.Id == "thresholds" {
					return thresholdSteps(t, prop.Value)
				}
			}
		}
	}
	if p.FieldConfig.Defaults.Thresholds == nil {
		t.Fatalf("panel %q has no thresholds", *p.Title)
	}
	return p.FieldConfig.Defaults.Thresholds.Steps
}

// thresholdSteps reads an override's thresholds, which the decoder leaves
// as generic JSON.
func thresholdSteps(t *testing.T, v any) []dashboard.Threshold {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("thresholds override is a %T", v)
	}
	var steps []dashboard.Threshold
	for _, s := range m["steps"].([]any) {
		sm := s.(map[string]any)
		th := dashboard.Threshold{Color: sm["color"].(string)}
		if f, ok := sm["value"].(float64); ok {
			th.Value = &f
		}
		steps = append(steps, th)
	}
	return steps
}

func panelByTitle(t *testing.T, d dashboard.Dashboard, title string) dashboard.Panel {
	t.Helper()
	for _, p := range panelsOf(d) {
		if p.Title != nil && *p.Title == title {
			return p
		}
	}
	t.Fatalf("no panel %q", title)
	return dashboard.Panel{}
}

// TestVitalColoursFollowTheAlarmLimits: in the committed room dashboard,
// every whole value of SpO2, pulse and blood pressure across its possible
// range gets the colour of the highest-priority default rule it meets,
// and the trends draw a line at every limit.
func TestVitalColoursFollowTheAlarmLimits(t *testing.T) {
	rules := alarm.DefaultRules()
	d := decodeStrict(t, "room.json")
	cases := []struct {
		panel, refID, metric string
		from, to             float64 // the catalogue's valid range
	}{
		{"SpO2", "A", "spo2", 0, 100},
		{"Pulse", "A", "pulse_rate", 0, 350},
		{"Blood pressure", "A", "nibp_systolic", 20, 300},
		{"Blood pressure", "B", "nibp_diastolic", 10, 250},
		{"Blood pressure", "C", "nibp_mean", 15, 275},
	}
	for _, c := range cases {
		steps := fieldThresholds(t, panelByTitle(t, d, c.panel), c.refID)
		for v := c.from; v <= c.to; v++ {
			if got, want := grafanaColour(steps, v), engineColour(rules, c.metric, v); got != want {
				t.Errorf("%s %v: shown %s, the alarm rules say %s", c.metric, v, got, want)
			}
		}
	}
	// Guard against a vacuous pass: the defaults do colour these values.
	if engineColour(rules, "spo2", 90) != colourMedium || engineColour(rules, "spo2", 85) != colourHigh {
		t.Fatal("the default rules changed: revisit this test")
	}

	for title, metrics := range map[string][]string{
		"SpO2 trend":           {"spo2"},
		"Pulse trend":          {"pulse_rate"},
		"Blood pressure trend": {"nibp_systolic", "nibp_diastolic"},
	} {
		p := panelByTitle(t, d, title)
		var lines []float64
		for _, s := range p.FieldConfig.Defaults.Thresholds.Steps {
			if s.Value != nil {
				lines = append(lines, *s.Value)
			}
		}
		for _, m := range metrics {
			for _, l := range limitsOf(rules, m) {
				if !slices.Contains(lines, l.value) {
					t.Errorf("%s: no limit line at %v (%s)", title, l.value, m)
				}
			}
		}
	}
}

// TestColourStepsOtherRules: a clinic's own limits move the colours.
func TestColourStepsOtherRules(t *testing.T) {
	rules := []alarm.Rule{
		{Name: "spo2-low", Metric: "spo2", AtOrBelow: ptr(92.0), Priority: alarm.Medium},
		{Name: "spo2-very-low", Metric: "spo2", AtOrBelow: ptr(88.0), Priority: alarm.High},
		{Name: "spo2-advisory", Metric: "spo2", AtOrBelow: ptr(94.0), Priority: alarm.Low},
	}
	steps := colourSteps(limitsOf(rules, "spo2"), 1)
	for v := 0.0; v <= 100; v++ {
		if got, want := grafanaColour(steps, v), engineColour(rules, "spo2", v); got != want {
			t.Errorf("spo2 %v: shown %s, rules say %s", v, got, want)
		}
	}
	if got := colourSteps(nil, 1); len(got) != 1 || got[0].Color != colourNormal {
		t.Errorf("no limits: %+v, want one green step", got)
	}
}
