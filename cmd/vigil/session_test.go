package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/agent/session"
)

// clinicRef is the clinic reference the tests give: it must never come back
// anywhere but the agent's local store.
const clinicRef = "MRN-TEST-4711"

// quickExit drops the race detector's one-second sleep at every exit
// (atexit_sleep_ms, default 1000), which these tests' fifty-odd short CLI
// runs would otherwise pay; its reports are still printed and still fail the
// run (exit 66).
func quickExit(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// vigilStdin is vigil with standard input.
func vigilStdin(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(vigilBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("vigil %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// sessionRequestSeen is one request the fake agent received.
type sessionRequestSeen struct {
	Method, URL string
	Body        map[string]any
}

// fakeSessionAgent serves the session API of agent/sessionapi.go and
// agent/sessionexport.go from fixed sessions, and records every request.
type fakeSessionAgent struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	requests []sessionRequestSeen
	current  *session.Session // the active session, nil when none
	ended    []session.Session

	exportBody map[string]string // format -> body
}

var fakeStart = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func newFakeSessionAgent(t *testing.T) *fakeSessionAgent {
	f := &fakeSessionAgent{t: t, exportBody: map[string]string{
		"csv":  "received_utc,device_time_utc,device,metric,value,unit,valid,flags,seq,session_id\n2026-11-26T09:00:01.000Z,,oximeter-1,spo2,97,%,true,,1,SESSION\n",
		"json": `{"format":"vigil-session/1","session":{"id":"SESSION"},"readings":[{"metric":"spo2","value":97,"note":"a } in \"text\""}]}` + "\n",
		"fhir": `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation"}}]}`,
	}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSessionAgent) seen() []sessionRequestSeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeSessionAgent) answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeSessionAgent) find(id string) (session.Session, bool) {
	if f.current != nil && f.current.ID == id {
		return *f.current, true
	}
	for _, s := range f.ended {
		if s.ID == id {
			return s, true
		}
	}
	return session.Session{}, false
}

func (f *fakeSessionAgent) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	seen := sessionRequestSeen{Method: r.Method, URL: r.URL.String()}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &seen.Body); err != nil {
			f.t.Errorf("%s %s: body %q is not a JSON object", r.Method, r.URL, body)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, seen)

	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && path == "/api/v1/session/start":
		if f.current != nil {
			f.answer(w, http.StatusConflict, map[string]any{"ok": false, "error": "session: a session is already active in this room"})
			return
		}
		route, _ := seen.Body["route"].(string)
		s := session.Session{ID: session.NewID(), Room: "room-1", Route: session.Route(route), Started: fakeStart}
		f.current = &s
		f.answer(w, http.StatusOK, map[string]any{"ok": true, "active": true, "session": s})
	case r.Method == http.MethodPost && path == "/api/v1/session/dose":
		if f.current == nil {
			f.answer(w, http.StatusConflict, map[string]any{"ok": false, "error": "session: no active session in this room"})
			return
		}
		s := f.current
		s.Doses = append(s.Doses, fakeStart.Add(5*time.Minute))
		s.Baseline = map[string]session.Measurement{
			"pulse_rate": {Value: 72, At: fakeStart.Add(4 * time.Minute), Device: "oximeter-1"},
			"spo2":       {Value: 97, At: fakeStart.Add(4 * time.Minute), Device: "oximeter-1"},
		}
		s.BaselineMissing = []string{"nibp_systolic", "nibp_diastolic"}
		s.Schedule.NextDue = fakeStart.Add(45 * time.Minute)
		f.answer(w, http.StatusOK, map[string]any{"ok": true, "active": true, "session": s})
	case r.Method == http.MethodPost && path == "/api/v1/session/end":
		if f.current == nil {
			f.answer(w, http.StatusConflict, map[string]any{"ok": false, "error": "session: no active session in this room"})
			return
		}
		s := *f.current
		s.Ended = fakeStart.Add(35 * time.Minute)
		s.Schedule.NextDue = time.Time{}
		change := -2.0
		s.Check = &session.Check{
			At: s.Ended, Tolerance: 0.2, ObservedSeconds: 1800, MinObservationSeconds: 7200,
			Vitals: []session.VitalCheck{
				{Metric: "spo2", Baseline: &session.Measurement{Value: 97}, Latest: &session.Measurement{Value: 95}, ChangePercent: &change, Result: session.ResultPass, Reason: "within 20% of baseline"},
				{Metric: "nibp_systolic", Result: session.ResultNoBaseline, Reason: "no valid reading before the first dose"},
			},
			Notes: []string{"observation shorter than 2 h (30 min since the last dose)"},
		}
		f.ended = append([]session.Session{s}, f.ended...)
		f.current = nil
		f.answer(w, http.StatusOK, map[string]any{"ok": true, "active": false, "session": s})
	case r.Method == http.MethodGet && path == "/api/v1/sessions":
		list := []session.Session{}
		if f.current != nil {
			list = append(list, *f.current)
		}
		list = append(list, f.ended...)
		f.answer(w, http.StatusOK, map[string]any{"ok": true, "sessions": list})
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/api/v1/sessions/"):
		rest := strings.TrimPrefix(path, "/api/v1/sessions/")
		id, what, _ := strings.Cut(rest, "/")
		s, ok := f.find(id)
		if !ok {
			f.answer(w, http.StatusNotFound, map[string]any{"ok": false, "error": "no such session"})
			return
		}
		switch what {
		case "":
			f.answer(w, http.StatusOK, map[string]any{"ok": true, "session": s})
		case "export":
			format := r.URL.Query().Get("format")
			body, ok := f.exportBody[format]
			if !ok {
				f.answer(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "format must be csv, json or fhir"})
				return
			}
			w.Write([]byte(strings.ReplaceAll(body, "SESSION", s.ID)))
		case "report":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!DOCTYPE html>\n<html><body><h1>%s</h1><svg></svg></body>\n</html>\n", s.ID)
		default:
			http.NotFound(w, r)
		}
	default:
		http.NotFound(w, r)
	}
}

// TestSessionCommandsRequestsAndOutput drives every session command against
// a fake agent and checks the exact requests and what is printed.
func TestSessionCommandsRequestsAndOutput(t *testing.T) {
	quickExit(t)
	agent := newFakeSessionAgent(t)
	addr := agent.srv.URL
	var allOutput strings.Builder
	run := func(args ...string) (string, string, int) {
		t.Helper()
		out, errOut, code := vigil(t, args...)
		allOutput.WriteString(out + errOut)
		return out, errOut, code
	}

	// Refused before any request: no --by, a bad route, a clinic reference
	// too long (and never quoted back).
	longRef := strings.Repeat("MRN-TEST-4711-", 6)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"session", "start", "--route", "iv", "--addr", addr}, "--by NAME is required"},
		{[]string{"session", "start", "--route", "oral", "--by", "tester", "--addr", addr}, "--route: not one of lozenge, im, iv, intranasal"},
		{[]string{"session", "start", "--clinic-ref", longRef, "--by", "tester", "--addr", addr}, "--clinic-ref: 84 characters, at most 64"},
		{[]string{"session", "dose", "--addr", addr}, "--by NAME is required"},
		{[]string{"session", "end", "--addr", addr}, "--by NAME is required"},
		{[]string{"session", "list", "--limit", "0", "--addr", addr}, "--limit must be 1 to 500"},
		{[]string{"session", "show", clinicRef, "--addr", addr}, "not a session id"},
		{[]string{"session", "export", "s-abcdefghijklmnop", "--format", "xml", "--addr", addr}, "--format must be csv, json or fhir"},
		{[]string{"session", "report", "s-abcdefghijklmnop", "--addr", addr}, "-o FILE is required"},
	} {
		out, errOut, code := run(c.args...)
		if code != 1 || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("vigil %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.args, code, out, errOut, c.want)
		}
	}
	if got := agent.seen(); len(got) != 0 {
		t.Fatalf("refused commands reached the agent: %+v", got)
	}

	// start: the id alone on the first line; the route normalised; the
	// clinic reference in the body only.
	out, errOut, code := run("session", "start", "--route", "IV", "--clinic-ref", clinicRef, "--by", "tester", "--addr", addr)
	if code != 0 {
		t.Fatalf("start: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	id := lines[0]
	if !session.ValidID(id) || len(lines) < 3 {
		t.Fatalf("start printed %q; want the session id alone on the first line, then a summary", out)
	}
	for _, want := range []string{"Session started " + fakeStart.Local().Format("15:04:05") + " in room-1 (by tester)", "Route: iv.", "Clinic reference recorded"} {
		if !strings.Contains(out, want) {
			t.Errorf("start output lacks %q:\n%s", want, out)
		}
	}
	seen := agent.seen()
	if len(seen) != 1 || seen[0].Method != http.MethodPost || seen[0].URL != "/api/v1/session/start" ||
		fmt.Sprint(seen[0].Body) != fmt.Sprint(map[string]any{"route": "iv", "clinic_ref": clinicRef, "by": "tester"}) {
		t.Errorf("start request = %+v", seen)
	}

	// A second start is refused by the agent: its error text, exit 1.
	_, errOut, code = run("session", "start", "--by", "tester", "--addr", addr)
	if code != 1 || !strings.Contains(errOut, "session start refused: session: a session is already active in this room") {
		t.Errorf("second start: exit %d, stderr %q", code, errOut)
	}
	seen = agent.seen()
	if last := seen[len(seen)-1]; fmt.Sprint(last.Body) != fmt.Sprint(map[string]any{"by": "tester"}) {
		t.Errorf("start without route or reference sent %v", last.Body)
	}

	// dose: the baseline and the next scheduled blood pressure.
	out, errOut, code = run("session", "dose", "--by", " nurse a ", "--addr", addr)
	if code != 0 {
		t.Fatalf("dose: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"Dose 1 recorded at " + fakeStart.Add(5*time.Minute).Local().Format("15:04:05") + " in session " + id + " (by nurse a).",
		"spo2", "97 %", "pulse_rate", "72 /min", "from oximeter-1", "missing: nibp_systolic, nibp_diastolic",
		"Next scheduled blood pressure due at " + fakeStart.Add(45*time.Minute).Local().Format("15:04:05"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dose output lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "spo2") > strings.Index(out, "pulse_rate") {
		t.Errorf("baseline not in catalogue order (spo2 before pulse_rate):\n%s", out)
	}

	// end: the check, vital by vital, and the observation.
	out, errOut, code = run("session", "end", "--by", "tester", "--addr", addr)
	if code != 0 {
		t.Fatalf("end: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"Session " + id + " ended at", "End-of-session check at",
		": FAIL (every vital within 20% of its baseline: no; observation complete: no)",
		"97 %", "->", "95 %", "-2.0%", "pass",
		"nibp_systolic", "no_baseline: no valid reading before the first dose",
		"Observation: NOT complete, 30 min 00 s since the last dose (minimum 2 h 00 min).",
		"Note: observation shorter than 2 h",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("end output lacks %q:\n%s", want, out)
		}
	}
	seen = agent.seen()
	for _, r := range seen[len(seen)-2:] {
		if r.Method != http.MethodPost || fmt.Sprint(r.Body["by"]) == "" || len(r.Body) != 1 {
			t.Errorf("dose/end request %+v: want a POST with only \"by\"", r)
		}
	}
	if fmt.Sprint(seen[len(seen)-2].Body) != fmt.Sprint(map[string]any{"by": "nurse a"}) {
		t.Errorf("dose body %v: want by trimmed", seen[len(seen)-2].Body)
	}
	_, errOut, code = run("session", "dose", "--by", "tester", "--addr", addr)
	if code != 1 || !strings.Contains(errOut, "session dose refused: session: no active session in this room") {
		t.Errorf("dose without a session: exit %d, stderr %q", code, errOut)
	}

	// list and show.
	run("session", "start", "--route", "intranasal", "--by", "tester", "--addr", addr)
	out, errOut, code = run("session", "list", "--limit", "5", "--addr", addr)
	if code != 0 {
		t.Fatalf("list: exit %d, stderr %q", code, errOut)
	}
	rows := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(rows) != 3 || strings.Join(strings.Fields(rows[0]), " ") != "ID STARTED ENDED ROUTE DOSES CHECK" {
		t.Fatalf("list:\n%s", out)
	}
	if f := strings.Fields(rows[1]); len(f) != 7 || f[3] != "active" || f[4] != "intranasal" || f[5] != "0" || f[6] != "-" {
		t.Errorf("active row %q", rows[1])
	}
	if f := strings.Fields(rows[2]); len(f) != 8 || f[0] != id || f[1]+" "+f[2] != fakeStart.Local().Format("2006-01-02 15:04") ||
		f[5] != "iv" || f[6] != "1" || f[7] != "fail" {
		t.Errorf("ended row %q", rows[2])
	}
	if last := agent.seen()[len(agent.seen())-1]; last.Method != http.MethodGet || last.URL != "/api/v1/sessions?limit=5" {
		t.Errorf("list request %+v", last)
	}
	out, errOut, code = run("session", "show", id, "--addr", addr)
	if code != 0 {
		t.Fatalf("show: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"Session  " + id, "Route    iv", "Doses    1: ", "(after 35 min 00 s)", "Baseline (the last valid", "Blood-pressure schedule:", "End-of-session check at", "Observation: NOT complete"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	_, errOut, code = run("session", "show", "s-aaaaaaaaaaaaaaaa", "--addr", addr)
	if code != 1 || !strings.Contains(errOut, "no such session") {
		t.Errorf("show unknown: exit %d, stderr %q", code, errOut)
	}

	// export to stdout and to files.
	out, errOut, code = run("session", "export", id, "--addr", addr)
	if code != 0 || out != strings.ReplaceAll(agent.exportBody["csv"], "SESSION", id) {
		t.Errorf("export csv to stdout: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	dir := t.TempDir()
	for _, format := range exportFormats {
		file := filepath.Join(dir, "out."+format)
		os.WriteFile(file, []byte("an older export"), 0o600) // replaced: export overwrites
		_, errOut, code = run("session", "export", id, "--format", format, "-o", file, "--addr", addr)
		data, _ := os.ReadFile(file)
		if code != 0 || string(data) != strings.ReplaceAll(agent.exportBody[format], "SESSION", id) {
			t.Errorf("export %s -o: exit %d, file %q, stderr %q", format, code, data, errOut)
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("export %s -o: mode %v (%v), want 0640", format, fi.Mode(), err)
		}
		if last := agent.seen()[len(agent.seen())-1]; last.URL != "/api/v1/sessions/"+id+"/export?format="+format {
			t.Errorf("export request %+v", last)
		}
	}

	// An export cut short fails and leaves no file; so does a refusal.
	agent.mu.Lock()
	agent.exportBody["json"] = `{"format":"vigil-session/1","readings":[{"metric":"spo2"},`
	agent.exportBody["csv"] = "received_utc,device\n2026-11-26T09:00:01.000Z,oxi"
	agent.mu.Unlock()
	for _, format := range []string{"json", "csv"} {
		file := filepath.Join(dir, "short."+format)
		_, errOut, code = run("session", "export", id, "--format", format, "-o", file, "--addr", addr)
		if code != 1 || !strings.Contains(errOut, "incomplete") {
			t.Errorf("short %s export: exit %d, stderr %q", format, code, errOut)
		}
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("short %s export left %s (%v)", format, file, err)
		}
		_, errOut, code = run("session", "export", id, "--format", format, "--addr", addr)
		if code != 1 || !strings.Contains(errOut, "incomplete") {
			t.Errorf("short %s export to stdout: exit %d, stderr %q", format, code, errOut)
		}
	}
	_, errOut, code = run("session", "export", "s-aaaaaaaaaaaaaaaa", "-o", filepath.Join(dir, "none.csv"), "--addr", addr)
	if code != 1 || !strings.Contains(errOut, "exporting s-aaaaaaaaaaaaaaaa: no such session") {
		t.Errorf("export unknown: exit %d, stderr %q", code, errOut)
	}

	// report: -o required, no overwrite without --force.
	report := filepath.Join(dir, "report.html")
	out, errOut, code = run("session", "report", id, "-o", report, "--addr", addr)
	data, _ := os.ReadFile(report)
	if code != 0 || !strings.Contains(string(data), "<h1>"+id+"</h1>") || !strings.Contains(out, "written to "+report) {
		t.Errorf("report: exit %d, file %q, stdout %q, stderr %q", code, data, out, errOut)
	}
	if fi, err := os.Stat(report); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("report mode %v (%v), want 0640", fi.Mode(), err)
	}
	os.WriteFile(report, []byte("keep me"), 0o640)
	_, errOut, code = run("session", "report", id, "-o", report, "--addr", addr)
	if data, _ := os.ReadFile(report); code != 1 || !strings.Contains(errOut, "exists; give --force") || string(data) != "keep me" {
		t.Errorf("report over an existing file: exit %d, stderr %q, file %q", code, errOut, data)
	}
	_, errOut, code = run("session", "report", id, "-o", report, "--force", "--addr", addr)
	if data, _ := os.ReadFile(report); code != 0 || !strings.Contains(string(data), "<svg>") {
		t.Errorf("report --force: exit %d, stderr %q, file %q", code, errOut, data)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}

	// The clinic reference went in one request body and nowhere else: no
	// URL, no output.
	for _, r := range agent.seen() {
		if strings.Contains(r.URL, clinicRef) {
			t.Errorf("clinic reference in a URL: %s", r.URL)
		}
	}
	if strings.Contains(allOutput.String(), clinicRef) {
		t.Errorf("clinic reference printed:\n%s", allOutput.String())
	}
}

func TestSessionHelp(t *testing.T) {
	quickExit(t)
	for _, sub := range []string{"", "start", "dose", "end", "list", "show", "export", "report"} {
		args := []string{"session", "--help"}
		if sub != "" {
			args = []string{"session", sub, "--help"}
		}
		out, errOut, code := vigil(t, args...)
		if code != 0 || len(out) < 300 || !strings.Contains(out, "--") {
			t.Errorf("vigil %v: exit %d, %d bytes of help; stderr %s", args, code, len(out), errOut)
		}
		if sub != "" && !strings.Contains(out, "--config") {
			t.Errorf("vigil %v does not offer --config:\n%s", args, out)
		}
	}
}

// TestSessionStartReadsClinicRefFromStdin: --clinic-ref - keeps the
// reference off the command line.
func TestSessionStartReadsClinicRefFromStdin(t *testing.T) {
	quickExit(t)
	agent := newFakeSessionAgent(t)
	out, errOut, code := vigilStdin(t, clinicRef+"\r\n", "session", "start", "--clinic-ref", "-", "--by", "tester", "--addr", agent.srv.URL)
	if code != 0 || strings.Contains(out+errOut, clinicRef) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if seen := agent.seen(); len(seen) != 1 || seen[0].Body["clinic_ref"] != clinicRef {
		t.Errorf("agent saw %+v", seen)
	}
	_, errOut, code = vigilStdin(t, "\n", "session", "start", "--clinic-ref", "-", "--by", "tester", "--addr", agent.srv.URL)
	if code != 1 || !strings.Contains(errOut, "no reference") {
		t.Errorf("empty stdin: exit %d, stderr %q", code, errOut)
	}
}

// TestSessionAgentUnreachableOrForeign: an agent that is down, or a server
// that is not a Vigil agent with sessions, gives a clear error and exit 1.
func TestSessionAgentUnreachableOrForeign(t *testing.T) {
	quickExit(t)
	foreign := httptest.NewServer(http.NotFoundHandler())
	defer foreign.Close()
	_, errOut, code := vigil(t, "session", "list", "--addr", foreign.URL)
	if code != 1 || !strings.Contains(errOut, "agent answered 404 Not Found: 404 page not found") {
		t.Errorf("foreign server: exit %d, stderr %q", code, errOut)
	}
	// The agent acted but its answer is unreadable: not shown as a refusal,
	// so nobody repeats the start.
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"ok":true,"active":true,"session":null}`))
	}))
	defer odd.Close()
	_, errOut, code = vigil(t, "session", "start", "--by", "tester", "--addr", odd.URL)
	if code != 1 || !strings.Contains(errOut, "the agent accepted the session start, but its answer is unreadable") {
		t.Errorf("unreadable answer: exit %d, stderr %q", code, errOut)
	}
	// The address from the agent's config file.
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte("site: a\nroom: b\ndevices:\n  - id: ox\n    driver: masimo-ascii\n    port: /dev/ttyUSB0\nhttp:\n  listen: "+strings.TrimPrefix(foreign.URL, "http://")+"\n"), 0o600)
	_, errOut, code = vigil(t, "session", "end", "--by", "tester", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "404 page not found") {
		t.Errorf("via --config: exit %d, stderr %q", code, errOut)
	}
	foreign.Close()
	for _, args := range [][]string{
		{"session", "start", "--clinic-ref", clinicRef, "--by", "tester"},
		{"session", "list"},
		{"session", "report", "s-abcdefghijklmnop", "-o", filepath.Join(t.TempDir(), "r.html")},
	} {
		_, errOut, code = vigil(t, append(args, "--addr", foreign.URL)...)
		if code != 1 || !strings.Contains(errOut, "cannot reach the agent at "+foreign.URL) ||
			!strings.Contains(errOut, "--config FILE or --addr") || strings.Contains(errOut, clinicRef) {
			t.Errorf("vigil %v, agent down: exit %d, stderr %q", args, code, errOut)
		}
	}
	_, errOut, code = vigil(t, "session", "list", "--addr", "127.0.0.1:1", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "not both") {
		t.Errorf("--addr and --config: exit %d, stderr %q", code, errOut)
	}
}

// mqttRecorder subscribes to everything on the broker and keeps every topic
// and payload.
type mqttRecorder struct {
	mu   sync.Mutex
	msgs []string // topic + " " + payload
}

func (m *mqttRecorder) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.msgs)
}

func (m *mqttRecorder) count(substrings ...string) int {
	n := 0
	for _, msg := range m.all() {
		hit := true
		for _, s := range substrings {
			hit = hit && strings.Contains(msg, s)
		}
		if hit {
			n++
		}
	}
	return n
}

func recordMQTT(t *testing.T, url string) *mqttRecorder {
	t.Helper()
	rec := &mqttRecorder{}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("session-recorder").SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("recorder connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("vigil/#", 1, func(_ paho.Client, m paho.Message) {
		rec.mu.Lock()
		rec.msgs = append(rec.msgs, m.Topic()+" "+string(m.Payload()))
		rec.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("recorder subscribe: %v", tok.Error())
	}
	return rec
}

// freeLoopbackAddr is a loopback address with a port free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSessionEndToEnd runs a real agent with a simulated oximeter, a real
// Mosquitto and a store, and takes a session through the CLI from start to
// report. The clinic reference given at start must appear nowhere: not in
// the CLI's output, the exports, the report, the agent's log, or any MQTT
// topic or payload.
func TestSessionEndToEnd(t *testing.T) {
	quickExit(t)
	broker := testbroker.StartMosquitto(t)
	mqttSeen := recordMQTT(t, broker.URL())
	port := startSimulator(t, "normal")
	dir := t.TempDir()
	listen := freeLoopbackAddr(t)
	yaml := fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: %s
http:
  listen: %s
store:
  path: %s
alarms:
  clock_check: false
session:
  min_observation: 3s
`, port, broker.URL(), listen, filepath.Join(dir, "vigil.db"))
	agent := startRunConfig(t, yaml)
	if got := waitHTTPAddr(t, agent); got != listen && !strings.HasSuffix(got, listen) {
		t.Fatalf("agent listens on %s, configured %s", got, listen)
	}
	// The CLI finds the agent through the same config file.
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(yaml), 0o600)
	waitUntil(t, "SpO2 readings on MQTT", 30*time.Second, func() bool {
		return mqttSeen.count("vigil/clinic-a/room-1/oximeter-1/spo2 ") >= 2
	})

	var cliOutput strings.Builder
	cli := func(args ...string) string {
		t.Helper()
		start := time.Now()
		out, errOut, code := vigil(t, args...)
		cliOutput.WriteString(out + errOut)
		if code != 0 {
			t.Fatalf("vigil %v: exit %d\nstdout %s\nstderr %s", args, code, out, errOut)
		}
		t.Logf("vigil %s: %s", strings.Join(args[:2], " "), time.Since(start).Round(time.Millisecond))
		return out
	}

	out := cli("session", "start", "--route", "iv", "--clinic-ref", clinicRef, "--by", "tester", "--config", cfg)
	id, _, _ := strings.Cut(out, "\n")
	if !session.ValidID(id) {
		t.Fatalf("start's first line %q is not a session id:\n%s", id, out)
	}
	tagged := `"session":"` + id + `"`
	waitUntil(t, "readings carrying the session id", 30*time.Second, func() bool {
		return mqttSeen.count("/oximeter-1/spo2 ", tagged) >= 3
	})
	out = cli("session", "dose", "--by", "tester", "--config", cfg)
	if !strings.Contains(out, "Dose 1 recorded") || !strings.Contains(out, "spo2") || !strings.Contains(out, "from oximeter-1") {
		t.Errorf("dose output lacks the SpO2 baseline:\n%s", out)
	}
	// Readings after the dose, and the (3 s) minimum observation.
	after := mqttSeen.count("/oximeter-1/spo2 ", tagged)
	waitUntil(t, "readings after the dose", 30*time.Second, func() bool {
		return mqttSeen.count("/oximeter-1/spo2 ", tagged) >= after+4
	})
	time.Sleep(3 * time.Second)
	out = cli("session", "end", "--by", "tester", "--config", cfg)
	if !strings.Contains(out, "Session "+id+" ended") || !strings.Contains(out, "Observation: complete") ||
		!strings.Contains(out, "observation complete: yes") {
		t.Errorf("end output:\n%s", out)
	}
	spo2Row := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "spo2" {
			spo2Row = line
		}
	}
	if !strings.Contains(spo2Row, "->") || !strings.HasSuffix(spo2Row, "pass") {
		t.Errorf("end check has no passing spo2 row (baseline -> latest):\n%s", out)
	}
	// No blood-pressure monitor here: no NIBP baseline, so the check fails.
	if !strings.Contains(out, "nibp_systolic") || !strings.Contains(out, ": FAIL") {
		t.Errorf("end check without NIBP should fail on nibp_systolic:\n%s", out)
	}

	out = cli("session", "list", "--config", cfg)
	if !strings.Contains(out, id) || !strings.Contains(out, " iv ") {
		t.Errorf("list lacks the session:\n%s", out)
	}
	out = cli("session", "show", id, "--config", cfg)
	if !strings.Contains(out, "Session  "+id) || !strings.Contains(out, "Doses    1: ") || !strings.Contains(out, "End-of-session check at") {
		t.Errorf("show:\n%s", out)
	}

	files := map[string]string{}
	for _, format := range []string{"csv", "json", "fhir"} {
		file := filepath.Join(dir, "export."+format)
		cli("session", "export", id, "--format", format, "-o", file, "--config", cfg)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		files[format] = string(data)
	}
	rows, err := csv.NewReader(strings.NewReader(files["csv"])).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("CSV export unreadable (%v):\n%s", err, files["csv"])
	}
	header := rows[0]
	col := func(name string) int { return slices.Index(header, name) }
	if col("metric") < 0 || col("unit") < 0 || col("session_id") < 0 || col("value") < 0 {
		t.Fatalf("CSV header %v", header)
	}
	spo2Rows := 0
	for _, row := range rows[1:] {
		if row[col("session_id")] != id {
			t.Errorf("CSV row of another session: %v", row)
		}
		if row[col("metric")] == "spo2" && row[col("unit")] == "%" && row[col("value")] != "" {
			spo2Rows++
		}
	}
	if spo2Rows < 5 {
		t.Errorf("CSV has %d SpO2 rows, want at least 5:\n%s", spo2Rows, files["csv"])
	}
	var exported map[string]any
	if err := json.Unmarshal([]byte(files["json"]), &exported); err != nil || !strings.Contains(files["json"], id) {
		t.Errorf("JSON export (%v):\n%.2000s", err, files["json"])
	}
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	observations := 0
	if err := json.Unmarshal([]byte(files["fhir"]), &bundle); err == nil {
		for _, e := range bundle.Entry {
			if e.Resource.ResourceType == "Observation" {
				observations++
			}
		}
	}
	if bundle.ResourceType != "Bundle" || observations < 5 {
		t.Errorf("FHIR export: resourceType %q with %d Observations:\n%.2000s", bundle.ResourceType, observations, files["fhir"])
	}

	report := filepath.Join(dir, "out.html")
	cli("session", "report", id, "-o", report, "--config", cfg)
	html, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), id) || !strings.Contains(string(html), "<svg") {
		t.Errorf("report lacks the session id or an <svg>: %.1000s", html)
	}
	files["report"] = string(html)

	// Privacy: the reference is nowhere but the store.
	files["CLI output"] = cliOutput.String()
	files["agent log"] = agent.logs()
	for what, text := range files {
		if strings.Contains(text, clinicRef) {
			t.Errorf("the clinic reference appears in the %s", what)
		}
	}
	msgs := mqttSeen.all()
	for _, m := range msgs {
		if strings.Contains(m, clinicRef) {
			t.Errorf("the clinic reference appears on MQTT: %.300s", m)
		}
	}
	// The scan saw the session's own messages (the retained session topic).
	if mqttSeen.count("vigil/clinic-a/room-1/session ", id) == 0 {
		t.Errorf("no message on vigil/clinic-a/room-1/session carried %s: the MQTT scan saw %d messages", id, len(msgs))
	}
	t.Logf("scanned %d MQTT messages, %d bytes of agent log", len(msgs), len(files["agent log"]))
}
