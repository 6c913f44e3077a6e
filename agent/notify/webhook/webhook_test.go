package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// net/http starts connection goroutines; every test must leave none behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The worked example of README.md: the same secret, time and event.
const (
	exampleSecret    = "vigil-example-secret-do-not-use"
	exampleTimestamp = 1741083315
)

func f64(v float64) *float64 { return &v }

func exampleEvent() alarm.Event {
	session := "c0ffee-session"
	onset := time.Date(2025, 3, 4, 10, 15, 0, 0, time.UTC)
	return alarm.Event{
		AlarmID:   "spo2-low-high/oximeter-1",
		EventID:   "01JNR6Q8W5T3M4V9X2K7B1C0DE",
		Phase:     alarm.PhaseStart,
		Kind:      alarm.Physiological,
		Priority:  alarm.High,
		State:     alarm.Active,
		Metric:    "spo2",
		Value:     f64(84),
		Unit:      "%",
		Limit:     f64(85),
		Condition: "below",
		Text:      "*** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		Site:      "clinic-north",
		Room:      "room-1",
		Device:    "oximeter-1",
		Session:   &session,
		Onset:     onset,
		Sent:      onset.Add(15 * time.Second),
		AckURL:    "https://vigil.clinic.example/ack/spo2-low-high%2Foximeter-1?exp=1741083615&sig=3b1f0c",
	}
}

// exampleBody is the exact body Vigil sends for exampleEvent.
const exampleBody = `{"alarm_id":"spo2-low-high/oximeter-1","event_id":"01JNR6Q8W5T3M4V9X2K7B1C0DE","phase":"start","kind":"physiological","state":"active","metric":"spo2","value":84,"unit":"%","limit":85,"condition":"below","text":"*** SpO2 84 % (limit 85 %), room-1, oximeter-1","site":"clinic-north","room":"room-1","device":"oximeter-1","session":"c0ffee-session","onset":"2025-03-04T10:15:00Z","sent":"2025-03-04T10:15:15Z","ack_url":"https://vigil.clinic.example/ack/spo2-low-high%2Foximeter-1?exp=1741083615&sig=3b1f0c","priority":"high"}`

// verify is a receiver's check, written from README.md alone: HMAC-SHA256
// keyed with the secret over timestamp, ".", body; hex; "sha256=" prefix.
func verify(secret, timestamp string, body []byte, signature string) bool {
	hexSig, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "." + string(body)))
	return hmac.Equal(got, mac.Sum(nil))
}

type request struct {
	method string
	uri    string
	header http.Header
	body   []byte
}

type receiver struct {
	*httptest.Server
	requests chan request
}

func newReceiver(t *testing.T, respond http.HandlerFunc) *receiver {
	t.Helper()
	rc := &receiver{requests: make(chan request, 16)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.requests <- request{method: r.Method, uri: r.URL.RequestURI(), header: r.Header.Clone(), body: b}
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-rc.requests:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the receiver got no request")
		return request{}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newNotifier(t *testing.T, c Config, logger *slog.Logger) *Notifier {
	t.Helper()
	if c.Name == "" {
		c.Name = "ehr-bridge"
	}
	if c.SecretFile == "" {
		c.SecretFile = writeFile(t, "secret", exampleSecret+"\n")
	}
	n, err := New(c, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	n.now = func() time.Time { return time.Unix(exampleTimestamp, 0) }
	t.Cleanup(n.client.CloseIdleConnections)
	return n
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestNotifySendsTheSignedDocumentedRequest(t *testing.T) {
	rc := newReceiver(t, nil)
	n := newNotifier(t, Config{URL: rc.URL + "/hooks/vigil?source=room-1", Version: "1.4.2"}, nil)
	res := n.Notify(context.Background(), exampleEvent())
	if res.Verdict != notify.Delivered || res.Err != nil {
		t.Fatalf("Notify = %v, %v; want delivered", res.Verdict, res.Err)
	}
	got := rc.next(t)
	if got.method != http.MethodPost || got.uri != "/hooks/vigil?source=room-1" {
		t.Errorf("request = %s %s, want POST /hooks/vigil?source=room-1", got.method, got.uri)
	}
	wantHeaders := map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "vigil/1.4.2",
		"X-Vigil-Timestamp": strconv.Itoa(exampleTimestamp),
	}
	for k, v := range wantHeaders {
		if g := got.header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	if string(got.body) != exampleBody {
		t.Errorf("body =\n%s\nwant\n%s", got.body, exampleBody)
	}
	sig := got.header.Get("X-Vigil-Signature")
	if !verify(exampleSecret, got.header.Get("X-Vigil-Timestamp"), got.body, sig) {
		t.Errorf("signature %q does not verify", sig)
	}
	// The check above must be able to fail: any change to the signed
	// material, or another key, breaks it.
	tampered := bytes.Replace(got.body, []byte(`"value":84`), []byte(`"value":94`), 1)
	for name, ok := range map[string]bool{
		"tampered body":   verify(exampleSecret, got.header.Get("X-Vigil-Timestamp"), tampered, sig),
		"other timestamp": verify(exampleSecret, strconv.Itoa(exampleTimestamp+1), got.body, sig),
		"other secret":    verify(exampleSecret+"x", got.header.Get("X-Vigil-Timestamp"), got.body, sig),
		"body only":       verify(exampleSecret, "", got.body, sig),
	} {
		if ok {
			t.Errorf("signature still verifies with %s", name)
		}
	}
}

func TestPayloadCarriesEveryEventFieldAndThePriorityName(t *testing.T) {
	rc := newReceiver(t, nil)
	n := newNotifier(t, Config{URL: rc.URL}, nil)
	for _, p := range []alarm.Priority{alarm.Low, alarm.Medium, alarm.High} {
		ev := exampleEvent()
		ev.Priority = p
		ev.Phase = alarm.PhaseEnd
		ev.State = alarm.Resolved
		ev.Session = nil
		ev.Value = nil
		ev.AckURL = ""
		if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
			t.Fatalf("Notify = %v, %v", res.Verdict, res.Err)
		}
		var got map[string]any
		if err := json.Unmarshal(rc.next(t).body, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"alarm_id": "spo2-low-high/oximeter-1", "event_id": "01JNR6Q8W5T3M4V9X2K7B1C0DE", "phase": "end",
			"kind": "physiological", "state": "resolved", "metric": "spo2", "value": nil, "unit": "%", "limit": 85.0,
			"condition": "below", "text": "*** SpO2 84 % (limit 85 %), room-1, oximeter-1", "site": "clinic-north",
			"room": "room-1", "device": "oximeter-1", "session": nil, "onset": "2025-03-04T10:15:00Z",
			"sent": "2025-03-04T10:15:15Z", "priority": p.String(),
		}
		if len(got) != len(want) {
			t.Errorf("payload has %d fields, want %d: %v", len(got), len(want), got)
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("priority %s: field %s = %v (present %t), want %v", p, k, g, ok, v)
			}
		}
	}
}

func TestNotifyNonFiniteValueIsSentAsNull(t *testing.T) {
	rc := newReceiver(t, nil)
	var logs lockedBuffer
	n := newNotifier(t, Config{URL: rc.URL}, slog.New(slog.NewTextHandler(&logs, nil)))
	ev := exampleEvent()
	ev.Value = f64(math.NaN())
	ev.Limit = f64(math.Inf(1))
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("Notify = %v, %v; a NaN must not stop the alarm", res.Verdict, res.Err)
	}
	got := rc.next(t)
	if !bytes.Contains(got.body, []byte(`"value":null`)) || !bytes.Contains(got.body, []byte(`"limit":null`)) {
		t.Errorf("body %s: want value and limit null", got.body)
	}
	if !verify(exampleSecret, got.header.Get("X-Vigil-Timestamp"), got.body, got.header.Get("X-Vigil-Signature")) {
		t.Error("signature does not verify")
	}
	if !strings.Contains(logs.String(), "not a finite number") {
		t.Errorf("no warning logged; logs:\n%s", logs.String())
	}
}

func TestEachAttemptIsSignedWithItsOwnTime(t *testing.T) {
	rc := newReceiver(t, nil)
	n := newNotifier(t, Config{URL: rc.URL}, nil)
	clock := time.Unix(exampleTimestamp, 0)
	n.now = func() time.Time { return clock }
	n.Notify(context.Background(), exampleEvent())
	clock = clock.Add(90 * time.Second)
	n.Notify(context.Background(), exampleEvent())
	first, second := rc.next(t), rc.next(t)
	if first.header.Get("X-Vigil-Timestamp") != strconv.Itoa(exampleTimestamp) ||
		second.header.Get("X-Vigil-Timestamp") != strconv.Itoa(exampleTimestamp+90) {
		t.Fatalf("timestamps %q, %q", first.header.Get("X-Vigil-Timestamp"), second.header.Get("X-Vigil-Timestamp"))
	}
	for _, r := range []request{first, second} {
		if !verify(exampleSecret, r.header.Get("X-Vigil-Timestamp"), r.body, r.header.Get("X-Vigil-Signature")) {
			t.Errorf("signature at %s does not verify", r.header.Get("X-Vigil-Timestamp"))
		}
	}
	if first.header.Get("X-Vigil-Signature") == second.header.Get("X-Vigil-Signature") {
		t.Error("two attempts at different times carry the same signature")
	}
}

func TestDefaultUserAgent(t *testing.T) {
	rc := newReceiver(t, nil)
	n := newNotifier(t, Config{URL: rc.URL}, nil)
	n.Notify(context.Background(), exampleEvent())
	if got := rc.next(t).header.Get("User-Agent"); got != "vigil/dev" {
		t.Errorf("User-Agent = %q, want vigil/dev", got)
	}
}

// readmeBlock returns the content of the fenced block of the given language
// that follows the line containing after in README.md.
func readmeBlock(t *testing.T, after, lang string) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i := strings.Index(text, after)
	if i < 0 {
		t.Fatalf("README.md has no %q", after)
	}
	m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```").FindStringSubmatch(text[i:])
	if m == nil {
		t.Fatalf("README.md has no %s block after %q", lang, after)
	}
	return m[1]
}

func TestREADMEExampleMatchesWhatIsSent(t *testing.T) {
	rc := newReceiver(t, nil)
	n := newNotifier(t, Config{URL: rc.URL}, nil)
	n.Notify(context.Background(), exampleEvent())
	got := rc.next(t)

	var pretty bytes.Buffer
	if err := json.Compact(&pretty, []byte(readmeBlock(t, "## Payload", "json"))); err != nil {
		t.Fatalf("README payload is not JSON: %v", err)
	}
	if pretty.String() != string(got.body) {
		t.Errorf("README payload, compacted:\n%s\nsent:\n%s", pretty.String(), got.body)
	}

	worked := readmeBlock(t, "## Worked example", "text")
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(worked), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("worked example line %q", line)
		}
		fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if fields["secret"] != exampleSecret || fields["X-Vigil-Timestamp"] != strconv.Itoa(exampleTimestamp) || fields["body"] != string(got.body) {
		t.Errorf("worked example inputs %v do not match the request sent", fields)
	}
	if fields["X-Vigil-Signature"] != got.header.Get("X-Vigil-Signature") {
		t.Errorf("README signature %q, sent %q", fields["X-Vigil-Signature"], got.header.Get("X-Vigil-Signature"))
	}
	if !verify(fields["secret"], fields["X-Vigil-Timestamp"], []byte(fields["body"]), fields["X-Vigil-Signature"]) {
		t.Error("the README's worked example does not verify")
	}
}

func TestNotifyVerdictByStatus(t *testing.T) {
	now := time.Unix(exampleTimestamp, 0)
	cases := []struct {
		status     int
		retryAfter string
		body       string
		want       notify.Verdict
		wantAfter  time.Duration
		wantBody   string
	}{
		{status: 200, want: notify.Delivered},
		{status: 204, want: notify.Delivered},
		{status: 400, body: "bad payload:\nmissing field", want: notify.GiveUp, wantBody: "bad payload: missing field"},
		{status: 401, body: "signature mismatch", want: notify.GiveUp, wantBody: "signature mismatch"},
		{status: 404, want: notify.GiveUp},
		{status: 410, want: notify.GiveUp},
		{status: 301, want: notify.GiveUp, wantBody: "redirect not followed; set url to the receiver's final address"},
		{status: 307, want: notify.GiveUp, wantBody: "redirect not followed; set url to the receiver's final address"},
		{status: 408, want: notify.Retry},
		{status: 429, retryAfter: "12", want: notify.Retry, wantAfter: 12 * time.Second},
		{status: 429, retryAfter: "999999", want: notify.Retry, wantAfter: notify.MaxRetryAfter},
		{status: 429, retryAfter: "-1", want: notify.Retry},
		{status: 503, retryAfter: now.Add(45 * time.Second).Format(http.TimeFormat), want: notify.Retry, wantAfter: 45 * time.Second},
		{status: 500, body: strings.Repeat("x", 300), want: notify.Retry, wantBody: strings.Repeat("x", maxErrorDetail) + "…"},
		{status: 504, want: notify.Retry},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status)+"/"+tc.retryAfter, func(t *testing.T) {
			rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				if tc.status >= 300 && tc.status < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			n := newNotifier(t, Config{URL: rc.URL}, nil)
			n.now = func() time.Time { return now }
			res := n.Notify(context.Background(), exampleEvent())
			if res.Verdict != tc.want || res.RetryAfter != tc.wantAfter {
				t.Fatalf("Notify = %v after %v (%v); want %v after %v", res.Verdict, res.RetryAfter, res.Err, tc.want, tc.wantAfter)
			}
			rc.next(t)
			select {
			case r := <-rc.requests:
				t.Errorf("a second request %s %s: the redirect was followed", r.method, r.uri)
			default:
			}
			if tc.want == notify.Delivered {
				if res.Err != nil {
					t.Errorf("Err = %v on delivery", res.Err)
				}
				return
			}
			var se *StatusError
			if !errors.As(res.Err, &se) || se.Code != tc.status || se.Body != tc.wantBody {
				t.Errorf("Err = %v; want a StatusError %d with body %q", res.Err, tc.status, tc.wantBody)
			}
		})
	}
}

func TestNotifyTimeoutIsRetry(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	n := newNotifier(t, Config{URL: rc.URL + "/hook?token=url-token-123", Timeout: 100 * time.Millisecond}, nil)
	res := n.Notify(context.Background(), exampleEvent())
	if res.Verdict != notify.Retry || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("Notify = %v, %v; want retry after the deadline", res.Verdict, res.Err)
	}
	if strings.Contains(res.Err.Error(), "url-token-123") {
		t.Errorf("error %q shows the URL's token", res.Err)
	}
}

func TestNotifyUnreachableReceiverIsRetry(t *testing.T) {
	rc := newReceiver(t, nil)
	url := rc.URL + "/hook?token=url-token-123"
	rc.Close()
	n := newNotifier(t, Config{URL: url}, nil)
	res := n.Notify(context.Background(), exampleEvent())
	if res.Verdict != notify.Retry || res.Err == nil {
		t.Fatalf("Notify = %v, %v; want retry", res.Verdict, res.Err)
	}
	if strings.Contains(res.Err.Error(), "url-token-123") {
		t.Errorf("error %q shows the URL's token", res.Err)
	}
}

func TestSecretNeverInErrorsNorLogs(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	status := make(chan int, 1)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(<-status)
		// A receiver that prints its own configuration in the error.
		_, _ = io.WriteString(w, "expected secret "+exampleSecret+" to match")
	})
	n := newNotifier(t, Config{URL: rc.URL + "/hook?token=url-token-123"}, logger)
	var errs []string
	for _, code := range []int{200, 401, 429, 500} {
		status <- code
		if res := n.Notify(context.Background(), exampleEvent()); res.Err != nil {
			errs = append(errs, res.Err.Error())
		}
		rc.next(t)
	}
	for _, content := range []string{"short", exampleSecret[:10]} {
		_, err := New(Config{Name: "x", URL: rc.URL, SecretFile: writeFile(t, "secret", content)}, logger)
		if err == nil {
			t.Fatalf("New accepted a %d-byte secret", len(content))
		}
		errs = append(errs, err.Error())
	}
	if len(errs) != 5 {
		t.Fatalf("collected %d errors, want 5: the test lost coverage", len(errs))
	}
	for _, e := range errs {
		for _, secret := range []string{exampleSecret, "short", exampleSecret[:10], "url-token-123"} {
			if strings.Contains(e, secret) {
				t.Errorf("error %q contains a secret", e)
			}
		}
	}
	for _, secret := range []string{exampleSecret, exampleSecret[:10], "url-token-123"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs.String())
		}
	}
}

func TestNewRejectsBadConfigNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, "secret", exampleSecret)
	cases := []struct {
		name    string
		config  Config
		wantKey string
	}{
		{"no name", Config{URL: "https://r.example/h", SecretFile: secret}, "name"},
		{"no url", Config{Name: "w", SecretFile: secret}, "url"},
		{"relative url", Config{Name: "w", URL: "/hook", SecretFile: secret}, "url"},
		{"mailto url", Config{Name: "w", URL: "mailto:a@b.example", SecretFile: secret}, "url"},
		{"credentials in url", Config{Name: "w", URL: "https://u:p@r.example/h", SecretFile: secret}, "url"},
		{"fragment in url", Config{Name: "w", URL: "https://r.example/h#x", SecretFile: secret}, "url"},
		{"negative timeout", Config{Name: "w", URL: "https://r.example/h", SecretFile: secret, Timeout: -1}, "timeout"},
		{"no secret file", Config{Name: "w", URL: "https://r.example/h"}, "secret_file"},
		{"missing secret file", Config{Name: "w", URL: "https://r.example/h", SecretFile: filepath.Join(dir, "absent")}, "secret_file"},
		{"secret file is a directory", Config{Name: "w", URL: "https://r.example/h", SecretFile: dir}, "secret_file"},
		{"empty secret", Config{Name: "w", URL: "https://r.example/h", SecretFile: writeFile(t, "empty", "\n")}, "secret_file"},
		{"short secret", Config{Name: "w", URL: "https://r.example/h", SecretFile: writeFile(t, "short", "  fifteen-bytes!\n")}, "secret_file"},
		{"huge secret file", Config{Name: "w", URL: "https://r.example/h", SecretFile: writeFile(t, "huge", strings.Repeat("s", notify.MaxSecretFileBytes+1))}, "secret_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := New(tc.config, slog.New(slog.DiscardHandler))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("New = %v, %v; want a ConfigError", n, err)
			}
			if ce.Key != tc.wantKey || !strings.Contains(err.Error(), tc.wantKey+":") {
				t.Errorf("error %q names key %q, want %q", err, ce.Key, tc.wantKey)
			}
		})
	}
}

func TestNewTrimsTheSecretAndDefaults(t *testing.T) {
	n, err := New(Config{Name: "w", URL: "https://r.example/h", SecretFile: writeFile(t, "secret", "\t"+exampleSecret+" \r\n")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if string(n.secret) != exampleSecret || n.timeout != notify.DefaultTimeout || n.Name() != "w" {
		t.Errorf("secret trimmed %t, timeout %v, name %q", string(n.secret) == exampleSecret, n.timeout, n.Name())
	}
	var _ notify.Notifier = n
}
