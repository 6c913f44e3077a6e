package pushover

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Credentials of the right shape (30 characters [A-Za-z0-9]); the tests
// check they never appear in an error or a log line.
const (
	testToken   = "tok0123456789ABCDEFGHIJKLMNOPQ"
	testUserKey = "usr0123456789abcdefghijklmnopq"
)

// request is one call the fake Pushover API received.
type request struct {
	method      string
	path        string
	contentType string
	form        url.Values // the POST body, parsed
	query       url.Values
	at          time.Time
}

// fakeAPI is an httptest server speaking Pushover's API: messages.json hands
// out receipts for emergency messages, receipts/{r}.json answers from
// receiptAnswer, cancel.json succeeds. Any path may be overridden.
type fakeAPI struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []request
	receipts int
	polls    map[string]int
	// override, when set, answers a request instead of the default; return
	// false to fall through to the default.
	override func(w http.ResponseWriter, r request) bool
	// receiptAnswer answers the poll number (1, 2, ...) of a receipt.
	receiptAnswer func(receipt string, poll int) map[string]any
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{polls: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) url() string { return f.srv.URL + "/1" }

func (f *fakeAPI) serve(w http.ResponseWriter, hr *http.Request) {
	if err := hr.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r := request{
		method:      hr.Method,
		path:        hr.URL.Path,
		contentType: hr.Header.Get("Content-Type"),
		form:        hr.PostForm,
		query:       hr.URL.Query(),
		at:          time.Now(),
	}
	f.mu.Lock()
	f.requests = append(f.requests, r)
	override := f.override
	f.mu.Unlock()
	if override != nil && override(w, r) {
		return
	}

	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.method == http.MethodPost && r.path == "/1/messages.json":
		f.mu.Lock()
		f.receipts++
		n := f.receipts
		f.mu.Unlock()
		ans := map[string]any{"status": 1, "request": fmt.Sprintf("req-%d", n)}
		if first(r.form, "priority") == "2" {
			ans["receipt"] = receiptID(n)
		}
		// Headers Pushover sends with every message answer.
		w.Header().Set("X-Limit-App-Limit", "10000")
		w.Header().Set("X-Limit-App-Remaining", "9999")
		w.Header().Set("X-Limit-App-Reset", "1893456000")
		writeJSON(w, http.StatusOK, ans)
	case r.method == http.MethodPost && strings.HasPrefix(r.path, "/1/receipts/") && strings.HasSuffix(r.path, "/cancel.json"):
		writeJSON(w, http.StatusOK, map[string]any{"status": 1, "request": "req-cancel"})
	case r.method == http.MethodGet && strings.HasPrefix(r.path, "/1/receipts/") && strings.HasSuffix(r.path, ".json"):
		receipt := strings.TrimSuffix(strings.TrimPrefix(r.path, "/1/receipts/"), ".json")
		f.mu.Lock()
		f.polls[receipt]++
		poll := f.polls[receipt]
		answer := f.receiptAnswer
		f.mu.Unlock()
		ans := map[string]any{"status": 1, "request": "req-poll", "acknowledged": 0, "expired": 0}
		if answer != nil {
			ans = answer(receipt, poll)
		}
		writeJSON(w, http.StatusOK, ans)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"status": 0, "errors": []string{"not found"}})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// receiptID is the fake's n-th receipt: 30 characters [A-Za-z0-9].
func receiptID(n int) string { return fmt.Sprintf("rcpt%026d", n) }

func first(v url.Values, key string) string {
	if len(v[key]) == 0 {
		return ""
	}
	return v[key][0]
}

func (f *fakeAPI) all() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

// only returns the requests to path.
func (f *fakeAPI) only(path string) []request {
	var out []request
	for _, r := range f.all() {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeAPI) pollCount(receipt string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[receipt]
}

func (f *fakeAPI) setOverride(o func(w http.ResponseWriter, r request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override = o
}

// logBuffer collects a notifier's log output for secret checks.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeSecrets writes the token and user key files (with the trailing
// newline and spaces an editor leaves) and returns their paths.
func writeSecrets(t *testing.T, token, user string) (tokenFile, userFile string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile = filepath.Join(dir, "pushover.token")
	userFile = filepath.Join(dir, "pushover.user")
	if err := os.WriteFile(tokenFile, []byte(" "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(userFile, []byte(user+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return tokenFile, userFile
}

// newTestNotifier builds a Notifier against f with poll interval poll, and
// checks at the end of the test that no log line held a credential.
func newTestNotifier(t *testing.T, f *fakeAPI, c Config, poll time.Duration) (*Notifier, *logBuffer) {
	t.Helper()
	c.TokenFile, c.UserKeyFile = writeSecrets(t, testToken, testUserKey)
	if c.Name == "" {
		c.Name = "phones"
	}
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := newNotifier(c, logger, f.url(), poll)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.client.CloseIdleConnections()
		assertNoSecret(t, "log", logs.String())
	})
	return n, logs
}

func assertNoSecret(t *testing.T, where, s string) {
	t.Helper()
	for name, secret := range map[string]string{"token": testToken, "user key": testUserKey} {
		if strings.Contains(s, secret) {
			t.Errorf("%s contains the %s: %q", where, name, s)
		}
	}
}

func ptr(v float64) *float64 { return &v }

// spo2Event is a physiological alarm event as the alarm engine emits it.
func spo2Event(p alarm.Priority, phase alarm.Phase) alarm.Event {
	session := "sess-7f3a"
	state := alarm.Active
	if phase == alarm.PhaseEnd {
		state = alarm.Resolved
	}
	return alarm.Event{
		AlarmID:   "spo2-low-" + p.String() + "/oximeter-1",
		EventID:   "ev-" + p.String() + "-1",
		Phase:     phase,
		Kind:      alarm.Physiological,
		Priority:  p,
		State:     state,
		Metric:    "spo2",
		Value:     ptr(84),
		Unit:      "%",
		Limit:     ptr(85),
		Condition: "below",
		Text:      p.Marker() + " SpO2 84 % below 85 % in room 3",
		Site:      "clinic-north",
		Room:      "room-3",
		Device:    "oximeter-1",
		Session:   &session,
		Onset:     time.Date(2025, 3, 4, 10, 15, 0, 0, time.UTC),
		Sent:      time.Date(2025, 3, 4, 10, 15, 20, 0, time.UTC),
		AckURL:    "https://vigil.local/ack/spo2?sig=abc123",
	}
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
