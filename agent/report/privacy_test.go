package report

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// forbiddenFieldWords are parts of a field name that would mean the input
// model can carry a clinic reference or a patient identifier.
var forbiddenFieldWords = []string{"clinic", "chart", "patient", "mrn", "ref", "name", "birth", "note"}

// TestInputModelHasNoClinicReference walks every exported field reachable
// from Session (through structs, pointers, slices and maps) and fails on a
// field whose name suggests a clinic reference or patient identity: the
// exports cannot leak what their input cannot hold.
func TestInputModelHasNoClinicReference(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
			if typ.Kind() == reflect.Map {
				walk(typ.Key(), path+"[key]")
			}
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ == reflect.TypeFor[time.Time]() {
			return
		}
		seen[typ] = true
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			lower := strings.ToLower(f.Name)
			for _, w := range forbiddenFieldWords {
				if strings.Contains(lower, w) {
					t.Errorf("%s.%s (%s): the input model must not carry a clinic reference or patient data", path, f.Name, typ)
				}
			}
			walk(f.Type, path+"."+f.Name)
		}
	}
	walk(reflect.TypeFor[Session](), "Session")
	if len(seen) < 6 {
		t.Fatalf("walked only %d types: the walk is broken", len(seen))
	}
}

// TestOutputsCarryNoSecrets renders an ordinary session whose alarm events
// carry acknowledge links (a credential) in every format and checks that
// neither the link's token nor a clinic-reference marker appears. The
// session logic keeps the clinic reference in the store only; if a future
// change threaded it through an alarm's text or a device name by mistake,
// the marker would show up here.
func TestOutputsCarryNoSecrets(t *testing.T) {
	const clinicRefMarker = "CHART-4711-MARKER"
	s := longSession(20 * time.Minute)
	for i := range s.Alarms {
		s.Alarms[i].AckURL = "http://room-2.clinic.lan/ack/SECRETTOKEN" + clinicRefMarker
	}
	for name, write := range map[string]func(*strings.Builder, Session) error{
		"csv":  func(b *strings.Builder, s Session) error { return WriteCSV(b, s) },
		"json": func(b *strings.Builder, s Session) error { return WriteJSON(b, s) },
		"fhir": func(b *strings.Builder, s Session) error { return WriteFHIR(b, s) },
		"html": func(b *strings.Builder, s Session) error { return WriteHTML(b, s) },
	} {
		var b strings.Builder
		if err := write(&b, s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := b.String()
		if len(out) < 1000 {
			t.Fatalf("%s: output only %d bytes", name, len(out))
		}
		for _, secret := range []string{"SECRETTOKEN", clinicRefMarker, "/ack/"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s output contains %q", name, secret)
			}
		}
	}
}
