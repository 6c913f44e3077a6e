package report

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// The test's own view of FHIR R4 JSON, written from the specification and
// not shared with the code under test.
type (
	tCoding  struct{ System, Code, Display string }
	tConcept struct {
		Coding []tCoding
		Text   string
	}
	tQuantity struct {
		Value              *float64
		Unit, System, Code string
	}
	tObservation struct {
		ResourceType      string
		ID                string
		Identifier        []struct{ System, Value string }
		Status            string
		Category          []tConcept
		Code              tConcept
		Subject           json.RawMessage
		EffectiveDateTime string
		ValueQuantity     *tQuantity
		Component         []struct {
			Code             tConcept
			ValueQuantity    *tQuantity
			DataAbsentReason *tConcept
		}
		Device *struct{ Display string }
		Note   []struct{ Text string }
	}
	tBundle struct {
		ResourceType string
		Type         string
		Identifier   struct{ System, Value string }
		Entry        []struct {
			FullURL  string
			Resource tObservation
		}
	}
)

// protocolCodes is protocols.md 5.3 as a table: MDC code, LOINC code (empty
// when the table gives none), UCUM unit.
var protocolCodes = map[string]struct{ mdc, loinc, ucum string }{
	"spo2":            {"150456", "59408-5", "%"},
	"pulse_rate":      {"149530", "8867-4", "/min"},
	"perfusion_index": {"150448", "", "%"},
	"nibp_systolic":   {"150021", "8480-6", "mm[Hg]"},
	"nibp_diastolic":  {"150022", "8462-4", "mm[Hg]"},
	"nibp_mean":       {"150023", "8478-0", "mm[Hg]"},
	"nibp_pulse_rate": {"149546", "8867-4", "/min"},
	"bp_panel":        {"150020", "85354-9", ""},
}

func codeOf(t *testing.T, c tConcept, system string) string {
	t.Helper()
	var found []string
	for _, cd := range c.Coding {
		if cd.System == system {
			found = append(found, cd.Code)
		}
	}
	if len(found) > 1 {
		t.Errorf("%d codings of %s in %+v", len(found), system, c)
	}
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

func metricByMDC(code string) string {
	for name, c := range protocolCodes {
		if c.mdc == code {
			return name
		}
	}
	return ""
}

func decodeBundle(t *testing.T, s Session) (tBundle, string) {
	t.Helper()
	out := render(t, fhirOf, s)
	var b tBundle
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("bundle is not JSON: %v", err)
	}
	return b, out
}

// checkObservation asserts what every Observation must carry and returns
// the metric its MDC code names.
func checkObservation(t *testing.T, o tObservation) string {
	t.Helper()
	if o.ResourceType != "Observation" || o.Status != "final" {
		t.Errorf("resourceType %q status %q", o.ResourceType, o.Status)
	}
	if len(o.Category) != 1 || codeOf(t, o.Category[0], "http://terminology.hl7.org/CodeSystem/observation-category") != "vital-signs" {
		t.Errorf("category %+v", o.Category)
	}
	if o.Subject != nil {
		t.Errorf("observation has a subject: %s", o.Subject)
	}
	if _, err := time.Parse(time.RFC3339, o.EffectiveDateTime); err != nil {
		t.Errorf("effectiveDateTime %q: %v", o.EffectiveDateTime, err)
	}
	if len(o.Identifier) == 0 {
		t.Error("observation without identifier")
	}
	for _, id := range o.Identifier {
		if id.System != "urn:vigil:reading" || !strings.Contains(id.Value, "/") {
			t.Errorf("identifier %+v", id)
		}
	}
	mdc := codeOf(t, o.Code, "urn:iso:std:iso:11073:10101")
	name := metricByMDC(mdc)
	want, ok := protocolCodes[name]
	if !ok {
		t.Fatalf("observation code %+v has no MDC code of protocols.md 5.3", o.Code)
	}
	if got := codeOf(t, o.Code, "http://loinc.org"); got != want.loinc {
		t.Errorf("%s: LOINC %q, want %q", name, got, want.loinc)
	}
	checkQuantity := func(q *tQuantity, unit string) {
		if q == nil || q.Value == nil || q.System != "http://unitsofmeasure.org" || q.Code != unit || q.Unit != unit {
			t.Errorf("%s: quantity %+v, want UCUM %q", name, q, unit)
		}
	}
	if name == "bp_panel" {
		if o.ValueQuantity != nil {
			t.Error("blood-pressure panel with a value of its own")
		}
		for _, c := range o.Component {
			cn := metricByMDC(codeOf(t, c.Code, "urn:iso:std:iso:11073:10101"))
			if !slices.Contains([]string{"nibp_systolic", "nibp_diastolic", "nibp_mean"}, cn) {
				t.Errorf("component %+v", c.Code)
				continue
			}
			if got := codeOf(t, c.Code, "http://loinc.org"); got != protocolCodes[cn].loinc {
				t.Errorf("component %s LOINC %q", cn, got)
			}
			if (c.ValueQuantity == nil) == (c.DataAbsentReason == nil) {
				t.Errorf("component %s needs exactly one of value and dataAbsentReason", cn)
			}
			if c.ValueQuantity != nil {
				checkQuantity(c.ValueQuantity, "mm[Hg]")
			}
		}
	} else {
		checkQuantity(o.ValueQuantity, want.ucum)
	}
	return name
}

func TestFHIRBundle(t *testing.T) {
	b, raw := decodeBundle(t, smallSession())
	if b.ResourceType != "Bundle" || b.Type != "collection" {
		t.Errorf("bundle %q type %q", b.ResourceType, b.Type)
	}
	if b.Identifier.System != "urn:vigil:session" || b.Identifier.Value != "s-fixture0000000001" {
		t.Errorf("bundle identifier %+v", b.Identifier)
	}
	for _, forbidden := range []string{`"Patient"`, `"subject"`, "SECRETTOKEN", "entered-in-error", `""`, `[]`} {
		if strings.Contains(raw, forbidden) {
			t.Errorf("bundle contains %s", forbidden)
		}
	}

	// Valid readings only: SpO2 98, pulse 72, SpO2 96.5 (flagged), BP
	// 128/82/97, NIBP pulse 74, BP 176 with a failed diastolic, SpO2 97.
	var names []string
	urls := map[string]bool{}
	for _, e := range b.Entry {
		if !strings.HasPrefix(e.FullURL, "urn:uuid:") || len(e.FullURL) != len("urn:uuid:")+36 || urls[e.FullURL] {
			t.Errorf("fullUrl %q missing, malformed or repeated", e.FullURL)
		}
		urls[e.FullURL] = true
		names = append(names, checkObservation(t, e.Resource))
	}
	want := []string{"spo2", "pulse_rate", "spo2", "bp_panel", "nibp_pulse_rate", "bp_panel", "spo2"}
	if !slices.Equal(names, want) {
		t.Fatalf("observations %v, want %v", names, want)
	}

	first := b.Entry[0].Resource
	if *first.ValueQuantity.Value != 98 || first.EffectiveDateTime != "2025-03-14T09:00:01.000Z" || first.Device == nil || first.Device.Display != oximeter {
		t.Errorf("first observation %+v", first)
	}
	if flagged := b.Entry[2].Resource; len(flagged.Note) != 1 || !strings.Contains(flagged.Note[0].Text, "low-perfusion") {
		t.Errorf("flagged SpO2 notes %+v", flagged.Note)
	}

	bp := b.Entry[3].Resource
	values := map[string]float64{}
	for _, c := range bp.Component {
		values[metricByMDC(codeOf(t, c.Code, "urn:iso:std:iso:11073:10101"))] = *c.ValueQuantity.Value
	}
	if values["nibp_systolic"] != 128 || values["nibp_diastolic"] != 82 || values["nibp_mean"] != 97 || len(bp.Component) != 3 {
		t.Errorf("BP components %v", values)
	}
	if bp.EffectiveDateTime != "2025-03-14T09:02:00.000Z" || len(bp.Identifier) != 3 {
		t.Errorf("BP time %s identifiers %+v", bp.EffectiveDateTime, bp.Identifier)
	}

	failed := b.Entry[5].Resource
	if len(failed.Component) != 2 {
		t.Fatalf("BP with a failed diastolic: %d components, want systolic and diastolic", len(failed.Component))
	}
	dia := failed.Component[1]
	if dia.ValueQuantity != nil || dia.DataAbsentReason == nil ||
		codeOf(t, *dia.DataAbsentReason, "http://terminology.hl7.org/CodeSystem/data-absent-reason") != "error" {
		t.Errorf("failed diastolic %+v", dia)
	}
	if len(failed.Note) != 1 || !strings.Contains(failed.Note[0].Text, "cuff-error") {
		t.Errorf("failed BP notes %+v", failed.Note)
	}
}

// A measurement with no valid value makes no Observation; readings of two
// NIBP devices at the same time make two; a repeated metric starts a new
// measurement.
func TestFHIRNIBPGrouping(t *testing.T) {
	s := smallSession()
	s.Readings = []drivers.Reading{
		{Device: "a", Seq: 1, Metric: drivers.NIBPSystolic, Valid: false, Flags: drivers.FlagCuffError, Received: t0},
		{Device: "a", Seq: 2, Metric: drivers.NIBPDiastolic, Valid: false, Received: t0},
		{Device: "a", Seq: 3, Metric: drivers.NIBPSystolic, Value: 120, Valid: true, Received: at(time.Minute)},
		{Device: "b", Seq: 1, Metric: drivers.NIBPSystolic, Value: 130, Valid: true, Received: at(time.Minute)},
		{Device: "a", Seq: 4, Metric: drivers.NIBPSystolic, Value: 121, Valid: true, Received: at(time.Minute + time.Second)},
		{Device: "a", Seq: 5, Metric: drivers.NIBPDiastolic, Value: 80, Valid: true, Received: at(time.Minute + time.Second)},
	}
	b, _ := decodeBundle(t, s)
	var got []string
	for _, e := range b.Entry {
		checkObservation(t, e.Resource)
		var ids []string
		for _, id := range e.Resource.Identifier {
			ids = append(ids, id.Value)
		}
		got = append(got, strings.Join(ids, "+"))
	}
	if want := []string{"a/3", "b/1", "a/4+a/5"}; !slices.Equal(got, want) {
		t.Errorf("measurements %v, want %v", got, want)
	}
	// The lone systolic has its diastolic reported as unknown.
	lone := b.Entry[0].Resource.Component
	if len(lone) != 2 || lone[1].DataAbsentReason == nil || lone[1].DataAbsentReason.Coding[0].Code != "unknown" {
		t.Errorf("lone systolic components %+v", lone)
	}
}

// The same session always exports the same bytes (fullUrls included), so a
// re-export can be compared with the first.
func TestFHIRDeterministic(t *testing.T) {
	s := longSession(10 * time.Minute)
	a := render(t, fhirOf, s)
	slices.Reverse(s.Readings)
	if b := render(t, fhirOf, s); a != b {
		t.Error("FHIR export depends on the order of the input readings")
	}
}

func TestFHIRCoversEveryExportedMetric(t *testing.T) {
	for _, id := range ExportedMetrics() {
		want, ok := protocolCodes[id.String()]
		if id == drivers.RespirationRate {
			want, ok = struct{ mdc, loinc, ucum string }{"151562", "9279-1", "/min"}, true
		}
		if !ok {
			t.Fatalf("%s has no expected codes", id)
		}
		s := smallSession()
		s.Readings = []drivers.Reading{{Device: "d", Seq: 1, Metric: id, Value: 42, Valid: true, Received: t0}}
		b, _ := decodeBundle(t, s)
		if len(b.Entry) != 1 {
			t.Fatalf("%s: %d entries", id, len(b.Entry))
		}
		o := b.Entry[0].Resource
		code := o.Code
		for _, c := range o.Component { // the component that has the value
			if c.ValueQuantity != nil {
				code = c.Code
			}
		}
		if codeOf(t, code, "urn:iso:std:iso:11073:10101") != want.mdc || codeOf(t, code, "http://loinc.org") != want.loinc {
			t.Errorf("%s coded %+v, want MDC %s LOINC %q", id, code, want.mdc, want.loinc)
		}
	}
}

// FHIR JSON has no empty arrays and no empty strings: a session without a
// valid reading gives a bundle without "entry", and a reading without a
// time is left out.
func TestFHIREmptyBundle(t *testing.T) {
	s := smallSession()
	s.Readings = []drivers.Reading{
		{Device: "d", Metric: drivers.SpO2, Valid: false, Received: t0},
		{Device: "d", Metric: drivers.SpO2, Value: 97, Valid: true},
	}
	_, raw := decodeBundle(t, s)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc["entry"]; ok || strings.Contains(raw, `""`) {
		t.Errorf("empty bundle: %s", raw)
	}
	assertKeys(t, "bundle", doc, "resourceType", "identifier", "type")
}
