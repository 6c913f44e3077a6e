package report

import (
	"bytes"
	"encoding/csv"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestCSVGolden(t *testing.T) {
	got := render(t, csvOf, smallSession())
	want := `received_utc,device_time_utc,device,metric,value,unit,valid,flags,seq,session_id
2025-03-14T09:00:01.000Z,2025-03-14T08:59:58.000Z,oximeter-1,spo2,98,%,true,,1,s-fixture0000000001
2025-03-14T09:00:01.000Z,2025-03-14T08:59:58.000Z,oximeter-1,pulse_rate,72,/min,true,,2,s-fixture0000000001
2025-03-14T09:00:02.000Z,,oximeter-1,spo2,,%,false,sensor-off;out-of-range,3,s-fixture0000000001
2025-03-14T09:00:03.000Z,,oximeter-1,spo2,,%,false,,5,s-fixture0000000001
2025-03-14T09:00:04.000Z,,oximeter-1,spo2,96.5,%,true,low-perfusion,6,s-fixture0000000001
2025-03-14T09:02:00.000Z,,nibp-1,nibp_systolic,128,mm[Hg],true,,1,s-fixture0000000001
2025-03-14T09:02:00.000Z,,nibp-1,nibp_diastolic,82,mm[Hg],true,,2,s-fixture0000000001
2025-03-14T09:02:00.000Z,,nibp-1,nibp_mean,97,mm[Hg],true,,3,s-fixture0000000001
2025-03-14T09:02:00.000Z,,nibp-1,nibp_pulse_rate,74,/min,true,,4,s-fixture0000000001
2025-03-14T09:50:00.000Z,,nibp-1,nibp_systolic,176,mm[Hg],true,,5,s-fixture0000000001
2025-03-14T09:50:00.000Z,,nibp-1,nibp_diastolic,,mm[Hg],false,cuff-error,6,s-fixture0000000001
2025-03-14T11:04:00.000Z,,oximeter-1,spo2,97,%,true,,7,s-fixture0000000001
`
	if got != want {
		t.Errorf("CSV differs.\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// Every row has the header's column count and parses as CSV, and no
// invalid reading carries a number.
func TestCSVShape(t *testing.T) {
	s := longSession(10 * time.Minute)
	rows, err := csv.NewReader(strings.NewReader(render(t, csvOf, s))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(s.Readings) {
		t.Fatalf("%d rows, want header + %d", len(rows), len(s.Readings))
	}
	for i, row := range rows[1:] {
		if (row[6] == "false") != (row[4] == "") {
			t.Fatalf("row %d: valid=%s with value %q", i+1, row[6], row[4])
		}
	}
}

func TestCSVSpreadsheetFormulaDefused(t *testing.T) {
	s := smallSession()
	s.Readings = []drivers.Reading{{Device: "=HYPERLINK(\"http://x\")", Metric: drivers.SpO2, Value: 97, Valid: true, Received: t0}}
	rows, err := csv.NewReader(strings.NewReader(render(t, csvOf, s))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := rows[1][2]; got != `'=HYPERLINK("http://x")` {
		t.Errorf("device cell %q, want the formula prefixed with an apostrophe", got)
	}
}

// failingWriter fails after n bytes, like a full disk.
type failingWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errDiskFull
	}
	w.n -= len(p)
	return len(p), nil
}

// Every writer returns the writer's error, and refuses a session without an
// id or start with a typed error.
func TestWritersErrors(t *testing.T) {
	writers := map[string]func(*bytes.Buffer, Session) error{"csv": csvOf, "json": jsonOf, "fhir": fhirOf, "html": htmlOf}
	direct := map[string]func(w *failingWriter, s Session) error{
		"csv":  func(w *failingWriter, s Session) error { return WriteCSV(w, s) },
		"json": func(w *failingWriter, s Session) error { return WriteJSON(w, s) },
		"fhir": func(w *failingWriter, s Session) error { return WriteFHIR(w, s) },
		"html": func(w *failingWriter, s Session) error { return WriteHTML(w, s) },
	}
	for name, write := range writers {
		for field, bad := range map[string]func(*Session){
			"ID":      func(s *Session) { s.ID = "" },
			"Started": func(s *Session) { s.Started = time.Time{} },
		} {
			s := smallSession()
			bad(&s)
			err := write(&bytes.Buffer{}, s)
			var ie *InputError
			if !errors.Is(err, ErrInvalidSession) || !errors.As(err, &ie) || ie.Field != field {
				t.Errorf("%s: session without %s gave %v, want an *InputError for it", name, field, err)
			}
		}
		for _, limit := range []int{0, 100, 3000} {
			err := direct[name](&failingWriter{n: limit}, longSession(5*time.Minute))
			if !errors.Is(err, errDiskFull) {
				t.Errorf("%s: writer failing after %d bytes gave %v", name, limit, err)
			}
		}
	}
}
