package alertmanager

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// capturedRequest is what the fake Alertmanager saw.
type capturedRequest struct {
	Method, Path, ContentType, Authorization, Body string
}

// recorder is an httptest Alertmanager that records every request and
// answers with status (200 unless set).
type recorder struct {
	mu       sync.Mutex
	requests []capturedRequest
	status   int
	header   http.Header
	posted   chan struct{}
}

func newRecorder(t *testing.T) (*recorder, *httptest.Server) {
	t.Helper()
	rec := &recorder{status: http.StatusOK, posted: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.requests = append(rec.requests, capturedRequest{
			Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"),
			Authorization: r.Header.Get("Authorization"), Body: string(body),
		})
		status, header := rec.status, rec.header
		rec.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		select {
		case rec.posted <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	return rec, srv
}

func (r *recorder) all() []capturedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]capturedRequest(nil), r.requests...)
}

func (r *recorder) set(status int, header http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.header = status, header
}

func ptr(v float64) *float64 { return &v }

var (
	onset = time.Date(2025, 3, 4, 10, 15, 30, 500_000_000, time.UTC)
	clock = time.Date(2025, 3, 4, 10, 20, 0, 0, time.UTC)
)

func spo2Event(phase alarm.Phase) alarm.Event {
	return alarm.Event{
		AlarmID: "spo2-low-medium/oximeter-1", EventID: "ev-42", Phase: phase,
		Kind: alarm.Physiological, Priority: alarm.Medium, State: alarm.Active,
		Metric: "spo2", Value: ptr(88), Unit: "%", Limit: ptr(90), Condition: "below",
		Text: "** SpO2 88 % below 90 % (room 2)", Site: "clinic-a", Room: "room-2",
		Device: "oximeter-1", Onset: onset, Sent: onset.Add(15 * time.Second),
	}
}

func newTestNotifier(t *testing.T, c Config) *Notifier {
	t.Helper()
	if c.Name == "" {
		c.Name = "am"
	}
	n, err := New(c, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	n.now = func() time.Time { return clock }
	return n
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const firingSpO2 = `{"labels":{"alarm_id":"spo2-low-medium/oximeter-1","alertname":"VigilSpo2LowMedium","device":"oximeter-1","kind":"physiological","metric":"spo2","priority":"medium","room":"room-2","site":"clinic-a"},` +
	`"annotations":{"condition":"below","event_id":"ev-42","limit":"90","state":"active","summary":"** SpO2 88 % below 90 % (room 2)","unit":"%","value":"88"},` +
	`"startsAt":"2025-03-04T10:15:30.5Z"}`

func TestNotifyStartPostsExactAlert(t *testing.T) {
	rec, srv := newRecorder(t)
	n := newTestNotifier(t, Config{
		URL:          srv.URL + "/",
		UsernameFile: writeFile(t, "user", "vigil\n"),
		PasswordFile: writeFile(t, "pass", "s3cret\n"),
	})
	res := n.Notify(context.Background(), spo2Event(alarm.PhaseStart))
	if res.Verdict != notify.Delivered || res.Err != nil {
		t.Fatalf("result = %v %v, want delivered", res.Verdict, res.Err)
	}
	got := rec.all()
	if len(got) != 1 {
		t.Fatalf("got %d requests, want 1", len(got))
	}
	want := capturedRequest{
		Method: http.MethodPost, Path: "/api/v2/alerts", ContentType: "application/json",
		Authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte("vigil:s3cret")),
		Body:          "[" + firingSpO2 + "]",
	}
	if got[0] != want {
		t.Errorf("request\n got %+v\nwant %+v", got[0], want)
	}
}

func TestNotifyEndResolvesWithSameLabels(t *testing.T) {
	rec, srv := newRecorder(t)
	n := newTestNotifier(t, Config{URL: srv.URL, GeneratorURL: "http://vigil.local:9100/"})
	if res := n.Notify(context.Background(), spo2Event(alarm.PhaseStart)); res.Verdict != notify.Delivered {
		t.Fatalf("start: %v %v", res.Verdict, res.Err)
	}
	end := spo2Event(alarm.PhaseEnd)
	end.State = alarm.Resolved
	end.Value = ptr(95)
	end.Text = "** SpO2 back to 95 %"
	if res := n.Notify(context.Background(), end); res.Verdict != notify.Delivered {
		t.Fatalf("end: %v %v", res.Verdict, res.Err)
	}
	got := rec.all()
	if len(got) != 2 {
		t.Fatalf("got %d requests, want 2", len(got))
	}
	want := `[{"labels":{"alarm_id":"spo2-low-medium/oximeter-1","alertname":"VigilSpo2LowMedium","device":"oximeter-1","kind":"physiological","metric":"spo2","priority":"medium","room":"room-2","site":"clinic-a"},` +
		`"annotations":{"condition":"below","event_id":"ev-42","limit":"90","state":"resolved","summary":"** SpO2 back to 95 %","unit":"%","value":"95"},` +
		`"startsAt":"2025-03-04T10:15:30.5Z","endsAt":"2025-03-04T10:20:00Z","generatorURL":"http://vigil.local:9100/"}]`
	if got[1].Body != want {
		t.Errorf("end body\n got %s\nwant %s", got[1].Body, want)
	}
	if len(n.firing) != 0 {
		t.Errorf("ended alarm still remembered as firing: %v", n.firing)
	}
}

func TestTechnicalAlarmOmitsEmptyLabelsAndAddsMarker(t *testing.T) {
	rec, srv := newRecorder(t)
	n := newTestNotifier(t, Config{URL: srv.URL})
	ev := alarm.Event{
		AlarmID: "broker-down", EventID: "ev-7", Phase: alarm.PhaseStart,
		Kind: alarm.Technical, Priority: alarm.High, State: alarm.Active,
		Text: "MQTT broker unreachable", Site: "clinic-a", Room: "room-2",
	}
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("%v %v", res.Verdict, res.Err)
	}
	want := `[{"labels":{"alarm_id":"broker-down","alertname":"VigilBrokerDown","kind":"technical","priority":"high","room":"room-2","site":"clinic-a"},` +
		`"annotations":{"event_id":"ev-7","state":"active","summary":"*** MQTT broker unreachable"}}]`
	if got := rec.all()[0].Body; got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

func TestEscalationResolvesPreviousLabels(t *testing.T) {
	rec, srv := newRecorder(t)
	n := newTestNotifier(t, Config{URL: srv.URL})
	start := spo2Event(alarm.PhaseStart)
	if res := n.Notify(context.Background(), start); res.Verdict != notify.Delivered {
		t.Fatalf("start: %v %v", res.Verdict, res.Err)
	}
	up := spo2Event(alarm.PhaseUpdate)
	up.Priority = alarm.High
	up.Text = "*** SpO2 88 % below 90 % for 2 min"
	if res := n.Notify(context.Background(), up); res.Verdict != notify.Delivered {
		t.Fatalf("update: %v %v", res.Verdict, res.Err)
	}
	want := `[{"labels":{"alarm_id":"spo2-low-medium/oximeter-1","alertname":"VigilSpo2LowMedium","device":"oximeter-1","kind":"physiological","metric":"spo2","priority":"medium","room":"room-2","site":"clinic-a"},` +
		`"annotations":{"condition":"below","event_id":"ev-42","limit":"90","state":"active","summary":"** SpO2 88 % below 90 % (room 2)","unit":"%","value":"88"},` +
		`"startsAt":"2025-03-04T10:15:30.5Z","endsAt":"2025-03-04T10:20:00Z"},` +
		`{"labels":{"alarm_id":"spo2-low-medium/oximeter-1","alertname":"VigilSpo2LowMedium","device":"oximeter-1","kind":"physiological","metric":"spo2","priority":"high","room":"room-2","site":"clinic-a"},` +
		`"annotations":{"condition":"below","event_id":"ev-42","limit":"90","state":"active","summary":"*** SpO2 88 % below 90 % for 2 min","unit":"%","value":"88"},` +
		`"startsAt":"2025-03-04T10:15:30.5Z"}]`
	if got := rec.all()[1].Body; got != want {
		t.Errorf("update body\n got %s\nwant %s", got, want)
	}
	// The end resolves the labels Alertmanager last saw: priority high.
	end := spo2Event(alarm.PhaseEnd)
	end.Priority = alarm.Medium
	n.Notify(context.Background(), end)
	if got := rec.all()[2].Body; !strings.Contains(got, `"priority":"high"`) || !strings.Contains(got, `"endsAt":"2025-03-04T10:20:00Z"`) {
		t.Errorf("end did not resolve the escalated labels: %s", got)
	}
}

func TestUnchangedUpdatePostsOneAlert(t *testing.T) {
	rec, srv := newRecorder(t)
	n := newTestNotifier(t, Config{URL: srv.URL})
	n.Notify(context.Background(), spo2Event(alarm.PhaseStart))
	up := spo2Event(alarm.PhaseUpdate)
	up.State = alarm.Acknowledged
	n.Notify(context.Background(), up)
	got := rec.all()[1].Body
	if want := "[" + strings.Replace(firingSpO2, `"state":"active"`, `"state":"acknowledged"`, 1) + "]"; got != want {
		t.Errorf("update body\n got %s\nwant %s", got, want)
	}
}

func TestStatusVerdicts(t *testing.T) {
	for _, tc := range []struct {
		status     int
		header     http.Header
		verdict    notify.Verdict
		retryAfter time.Duration
	}{
		{200, nil, notify.Delivered, 0},
		{204, nil, notify.Delivered, 0},
		{400, nil, notify.GiveUp, 0},
		{401, nil, notify.GiveUp, 0},
		{404, nil, notify.GiveUp, 0},
		{408, nil, notify.Retry, 0},
		{429, http.Header{"Retry-After": {"7"}}, notify.Retry, 7 * time.Second},
		{500, nil, notify.Retry, 0},
		{503, http.Header{"Retry-After": {clock.Add(90 * time.Second).Format(http.TimeFormat)}}, notify.Retry, 90 * time.Second},
		{503, http.Header{"Retry-After": {"86400"}}, notify.Retry, notify.MaxRetryAfter},
		{503, http.Header{"Retry-After": {"soon"}}, notify.Retry, 0},
	} {
		rec, srv := newRecorder(t)
		rec.set(tc.status, tc.header)
		n := newTestNotifier(t, Config{URL: srv.URL})
		res := n.Notify(context.Background(), spo2Event(alarm.PhaseStart))
		if res.Verdict != tc.verdict || res.RetryAfter != tc.retryAfter {
			t.Errorf("HTTP %d %v: got %v retry-after %v, want %v %v", tc.status, tc.header, res.Verdict, res.RetryAfter, tc.verdict, tc.retryAfter)
		}
		if tc.verdict != notify.Delivered {
			var se *StatusError
			if !errors.As(res.Err, &se) || se.Code != tc.status {
				t.Errorf("HTTP %d: err = %v, want *StatusError with the code", tc.status, res.Err)
			}
		}
	}
}

func TestErrorBodyIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, strings.Repeat("x", 100_000))
	}))
	defer srv.Close()
	n := newTestNotifier(t, Config{URL: srv.URL})
	res := n.Notify(context.Background(), spo2Event(alarm.PhaseStart))
	var se *StatusError
	if !errors.As(res.Err, &se) || len(se.Body) != maxErrorBody {
		t.Fatalf("err = %v, want a StatusError with a %d-byte body", res.Err, maxErrorBody)
	}
}

func TestNetworkErrorAndTimeoutRetry(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	n := newTestNotifier(t, Config{URL: url})
	if res := n.Notify(context.Background(), spo2Event(alarm.PhaseStart)); res.Verdict != notify.Retry || res.Err == nil {
		t.Errorf("closed server: got %v %v, want retry", res.Verdict, res.Err)
	}

	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices the client leaving only once the body is read.
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	defer hang.Close()
	n = newTestNotifier(t, Config{URL: hang.URL, Timeout: 50 * time.Millisecond})
	res := n.Notify(context.Background(), spo2Event(alarm.PhaseStart))
	if res.Verdict != notify.Retry || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("hanging server: got %v %v, want retry with deadline exceeded", res.Verdict, res.Err)
	}
}

func TestUnknownPhaseGivesUp(t *testing.T) {
	rec, srv := newRecorder(t)
	n := newTestNotifier(t, Config{URL: srv.URL})
	ev := spo2Event("paused")
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.GiveUp {
		t.Errorf("got %v, want give up", res.Verdict)
	}
	if len(rec.all()) != 0 {
		t.Error("an event with an unknown phase was posted")
	}
}

func TestRunResendRepostsFiringUntilEnd(t *testing.T) {
	rec, srv := newRecorder(t)
	n := newTestNotifier(t, Config{URL: srv.URL, ResendEvery: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.RunResend(ctx) }()
	defer func() { cancel(); <-done }()

	n.Notify(context.Background(), spo2Event(alarm.PhaseStart))
	deadline := time.After(10 * time.Second)
	for len(rec.all()) < 4 {
		select {
		case <-rec.posted:
		case <-deadline:
			t.Fatalf("only %d posts after 10 s", len(rec.all()))
		}
	}
	for i, r := range rec.all() {
		if r.Body != "["+firingSpO2+"]" {
			t.Fatalf("post %d body %s, want the firing alert", i, r.Body)
		}
	}
	n.Notify(context.Background(), spo2Event(alarm.PhaseEnd))
	afterEnd := len(rec.all())
	if last := rec.all()[afterEnd-1].Body; !strings.Contains(last, `"endsAt"`) {
		t.Fatalf("last post is not the resolve: %s", last)
	}
	// Ten resend periods: a resend of the ended alarm would show here.
	time.Sleep(100 * time.Millisecond)
	if got := rec.all(); len(got) != afterEnd {
		t.Errorf("%d posts after the end, want none: %s", len(got)-afterEnd, got[afterEnd].Body)
	}
}

func TestRunResendStopsWithContext(t *testing.T) {
	_, srv := newRecorder(t)
	n := newTestNotifier(t, Config{URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.RunResend(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunResend did not return after its context ended")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	user := writeFile(t, "user", "vigil\n")
	pass := writeFile(t, "pass", "hunter2\n")
	empty := writeFile(t, "empty", "\n")
	for name, c := range map[string]Config{
		"no name":             {URL: "http://127.0.0.1:9093"},
		"no url":              {Name: "am"},
		"not http":            {Name: "am", URL: "ftp://127.0.0.1:9093"},
		"relative":            {Name: "am", URL: "127.0.0.1:9093"},
		"credentials in url":  {Name: "am", URL: "http://vigil:hunter2@127.0.0.1:9093"},
		"query":               {Name: "am", URL: "http://127.0.0.1:9093/?x=1"},
		"negative timeout":    {Name: "am", URL: "http://127.0.0.1:9093", Timeout: -time.Second},
		"resend too slow":     {Name: "am", URL: "http://127.0.0.1:9093", ResendEvery: 5 * time.Minute},
		"negative resend":     {Name: "am", URL: "http://127.0.0.1:9093", ResendEvery: -time.Second},
		"username only":       {Name: "am", URL: "http://127.0.0.1:9093", UsernameFile: user},
		"missing password":    {Name: "am", URL: "http://127.0.0.1:9093", UsernameFile: user, PasswordFile: filepath.Join(t.TempDir(), "none")},
		"empty password":      {Name: "am", URL: "http://127.0.0.1:9093", UsernameFile: user, PasswordFile: empty},
		"relative generator":  {Name: "am", URL: "http://127.0.0.1:9093", GeneratorURL: "/vigil"},
		"password ok, no url": {Name: "am", UsernameFile: user, PasswordFile: pass},
	} {
		_, err := New(c, nil)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want *ConfigError", name, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error reveals the password: %v", name, err)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	n, err := New(Config{Name: "am", URL: "https://am.example:9093/prefix/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "am" || n.timeout != notify.DefaultTimeout || n.resendEvery != DefaultResendEvery ||
		n.alertsURL != "https://am.example:9093/prefix/api/v2/alerts" {
		t.Errorf("defaults: name %q timeout %v resend %v url %q", n.Name(), n.timeout, n.resendEvery, n.alertsURL)
	}
}

func TestAlertName(t *testing.T) {
	for in, want := range map[string]string{
		"spo2-low-medium/oximeter-1": "VigilSpo2LowMedium",
		"broker-down":                "VigilBrokerDown",
		"nibp_sys high":              "VigilNibpSysHigh",
		"":                           "Vigil",
		"/dev":                       "Vigil",
		"é-ü":                        "Vigil",
	} {
		if got := alertName(in); got != want {
			t.Errorf("alertName(%q) = %q, want %q", in, got, want)
		}
	}
}
