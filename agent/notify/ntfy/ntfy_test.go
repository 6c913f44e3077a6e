package ntfy

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

const (
	testTopic = "vigil-room1-x7Qk2"
	testToken = "tk_SECRETtoken0123456789abcdef"
	testAck   = "https://vigil.example/ack/spo2-low?sig=9f86d081884c"
)

// request is what the test server saw.
type request struct {
	method string
	path   string
	header http.Header
	body   string
}

// ntfyServer records every request and answers with respond.
type ntfyServer struct {
	*httptest.Server
	requests chan request
}

func newServer(t *testing.T, respond http.HandlerFunc) *ntfyServer {
	t.Helper()
	s := &ntfyServer{requests: make(chan request, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.requests <- request{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: string(b)}
		if respond == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"hwQ2YpKdmg6p","time":1700000000,"event":"message","topic":"`+testTopic+`"}`)
			return
		}
		respond(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *ntfyServer) topicURL() string { return s.URL + "/" + testTopic }

// next returns the request the server saw, failing if none came.
func (s *ntfyServer) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-s.requests:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the server received no request")
		return request{}
	}
}

// lockedBuffer collects log output written from the Notify goroutine.
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

func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
		c.Name = "phones"
	}
	n, err := New(c, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(n.client.CloseIdleConnections)
	return n
}

func f64(v float64) *float64 { return &v }

// spo2Event is a low-SpO2 alarm event as the alarm engine emits it.
func spo2Event(p alarm.Priority, phase alarm.Phase, state alarm.State) alarm.Event {
	onset := time.Date(2025, 3, 4, 10, 15, 0, 0, time.UTC)
	return alarm.Event{
		AlarmID:   "spo2-low-" + p.String() + "/oximeter-1",
		EventID:   "01JNR6Q0000000000000000000",
		Phase:     phase,
		Kind:      alarm.Physiological,
		Priority:  p,
		State:     state,
		Metric:    "spo2",
		Value:     f64(84),
		Unit:      "%",
		Limit:     f64(85),
		Condition: "below",
		Text:      p.Marker() + " SpO2 84 % (limit 85 %), room-1, oximeter-1",
		Site:      "clinic-north",
		Room:      "room-1",
		Device:    "oximeter-1",
		Onset:     onset,
		Sent:      onset.Add(15 * time.Second),
		AckURL:    testAck,
	}
}

// ntfyHeaders are the request headers ntfy reads; the tests compare all of
// them, so a header sent by mistake fails as surely as a missing one.
var ntfyHeaders = []string{"Title", "X-Priority", "Priority", "Tags", "Click", "Actions", "Authorization", "Content-Type",
	"X-Title", "X-Tags", "X-Click", "X-Actions", "Message", "X-Message", "Markdown", "Icon", "Attach", "Email", "Delay"}

// checkHeaders compares the ntfy headers of got with want. Title is
// compared after RFC 2047 decoding (ntfy decodes it the same way) and must
// travel as plain ASCII.
func checkHeaders(t *testing.T, got http.Header, want map[string]string) {
	t.Helper()
	for _, name := range ntfyHeaders {
		raw := got.Get(name)
		value := raw
		if name == "Title" || name == "Tags" {
			for i := 0; i < len(raw); i++ {
				if raw[i] < ' ' || raw[i] > '~' {
					t.Errorf("header %s is not plain ASCII: %q", name, raw)
					break
				}
			}
			decoded, err := new(mime.WordDecoder).DecodeHeader(raw)
			if err != nil {
				t.Errorf("header %s %q: RFC 2047 decoding failed: %v", name, raw, err)
			}
			value = decoded
		}
		if value != want[name] {
			t.Errorf("header %s = %q, want %q", name, value, want[name])
		}
	}
}

func TestNotifySendsTheDocumentedRequestForEachPriorityAndPhase(t *testing.T) {
	const actions = "view, Acknowledge, " + testAck + ", clear=true"
	cases := []struct {
		name  string
		ev    alarm.Event
		want  map[string]string
		wBody string
	}{
		{
			name: "high start",
			ev:   spo2Event(alarm.High, alarm.PhaseStart, alarm.Active),
			want: map[string]string{
				"Title": "*** SpO2 low — room-1", "X-Priority": "5", "Tags": "rotating_light,physiological,clinic,kap",
				"Click": testAck, "Actions": actions,
			},
			wBody: "*** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
		{
			name: "medium start",
			ev:   spo2Event(alarm.Medium, alarm.PhaseStart, alarm.Active),
			want: map[string]string{
				"Title": "** SpO2 low — room-1", "X-Priority": "4", "Tags": "warning,physiological,clinic,kap",
				"Click": testAck, "Actions": actions,
			},
			wBody: "** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
		{
			name: "low start",
			ev:   spo2Event(alarm.Low, alarm.PhaseStart, alarm.Active),
			want: map[string]string{
				"Title": "* SpO2 low — room-1", "X-Priority": "3", "Tags": "information_source,physiological,clinic,kap",
				"Click": testAck, "Actions": actions,
			},
			wBody: "* SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
		{
			name: "high update while latched still asks for acknowledgement",
			ev:   spo2Event(alarm.High, alarm.PhaseUpdate, alarm.Latched),
			want: map[string]string{
				"Title": "*** SpO2 low — room-1", "X-Priority": "5", "Tags": "rotating_light,physiological,clinic,kap",
				"Click": testAck, "Actions": actions,
			},
			wBody: "*** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
		{
			name: "high end is a quiet resolved note without ack link",
			ev:   spo2Event(alarm.High, alarm.PhaseEnd, alarm.Resolved),
			want: map[string]string{
				"Title": "*** Resolved: SpO2 low — room-1", "X-Priority": "2", "Tags": "white_check_mark,physiological,clinic,kap",
			},
			wBody: "*** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
		{
			name: "medium end",
			ev:   spo2Event(alarm.Medium, alarm.PhaseEnd, alarm.Resolved),
			want: map[string]string{
				"Title": "** Resolved: SpO2 low — room-1", "X-Priority": "2", "Tags": "white_check_mark,physiological,clinic,kap",
			},
			wBody: "** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
		{
			name: "acknowledged update is quiet",
			ev:   spo2Event(alarm.Medium, alarm.PhaseUpdate, alarm.Acknowledged),
			want: map[string]string{
				"Title": "** Acknowledged: SpO2 low — room-1", "X-Priority": "2", "Tags": "ballot_box_with_check,physiological,clinic,kap",
			},
			wBody: "** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, nil)
			n := newNotifier(t, Config{URL: srv.topicURL(), TokenFile: writeFile(t, "token", testToken+"\n"), Tags: []string{"clinic", " kap "}}, nil)
			res := n.Notify(context.Background(), tc.ev)
			if res.Verdict != notify.Delivered || res.Err != nil {
				t.Fatalf("Notify = %v, %v; want delivered", res.Verdict, res.Err)
			}
			got := srv.next(t)
			if got.method != http.MethodPost || got.path != "/"+testTopic {
				t.Errorf("request = %s %s, want POST /%s", got.method, got.path, testTopic)
			}
			want := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "text/plain; charset=utf-8"}
			for k, v := range tc.want {
				want[k] = v
			}
			checkHeaders(t, got.header, want)
			if got.body != tc.wBody {
				t.Errorf("body = %q, want %q", got.body, tc.wBody)
			}
		})
	}
}

func TestNotifyAuthModes(t *testing.T) {
	cases := []struct {
		name     string
		config   func(t *testing.T) Config
		wantAuth string
	}{
		{
			name: "bearer token, whitespace around it ignored",
			config: func(t *testing.T) Config {
				return Config{TokenFile: writeFile(t, "token", "  "+testToken+" \r\n")}
			},
			wantAuth: "Bearer " + testToken,
		},
		{
			name: "basic auth, trailing newline not part of the password",
			config: func(t *testing.T) Config {
				return Config{Username: "nurse-station", PasswordFile: writeFile(t, "password", "correct horse:battery\n")}
			},
			// RFC 7617: base64 of "user:password".
			wantAuth: "Basic " + base64.StdEncoding.EncodeToString([]byte("nurse-station:correct horse:battery")),
		},
		{
			name:     "no auth for an open topic",
			config:   func(t *testing.T) Config { return Config{} },
			wantAuth: "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, nil)
			c := tc.config(t)
			c.URL = srv.topicURL()
			n := newNotifier(t, c, nil)
			if res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart, alarm.Active)); res.Verdict != notify.Delivered {
				t.Fatalf("Notify = %v, %v", res.Verdict, res.Err)
			}
			if got := srv.next(t).header.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tc.wantAuth)
			}
		})
	}
}

func TestNotifyWithoutAckURLSendsNoClickNorAction(t *testing.T) {
	srv := newServer(t, nil)
	n := newNotifier(t, Config{URL: srv.topicURL()}, nil)
	ev := spo2Event(alarm.High, alarm.PhaseStart, alarm.Active)
	ev.AckURL = ""
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("Notify = %v, %v", res.Verdict, res.Err)
	}
	checkHeaders(t, srv.next(t).header, map[string]string{
		"Title": "*** SpO2 low — room-1", "X-Priority": "5", "Tags": "rotating_light,physiological",
		"Content-Type": "text/plain; charset=utf-8",
	})
}

func TestNotifyAckURLThatBreaksTheSimpleActionSyntaxUsesJSON(t *testing.T) {
	srv := newServer(t, nil)
	n := newNotifier(t, Config{URL: srv.topicURL()}, nil)
	ev := spo2Event(alarm.Medium, alarm.PhaseStart, alarm.Active)
	ev.AckURL = "https://vigil.example/ack?ids=a,b;c"
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("Notify = %v, %v", res.Verdict, res.Err)
	}
	h := srv.next(t).header
	const want = `[{"action":"view","label":"Acknowledge","url":"https://vigil.example/ack?ids=a,b;c","clear":true}]`
	if got := h.Get("Actions"); got != want {
		t.Errorf("Actions = %q, want %q", got, want)
	}
	if got := h.Get("Click"); got != ev.AckURL {
		t.Errorf("Click = %q, want %q", got, ev.AckURL)
	}
}

func TestNotifyLeavesOutAnAckURLThatIsNotHTTP(t *testing.T) {
	var logs lockedBuffer
	srv := newServer(t, nil)
	n := newNotifier(t, Config{URL: srv.topicURL()}, debugLogger(&logs))
	for _, bad := range []string{"javascript:alert(1)", "/ack/relative", "https://vigil.example/ack with space", "https://vigil.example/é"} {
		ev := spo2Event(alarm.High, alarm.PhaseStart, alarm.Active)
		ev.AckURL = bad
		if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
			t.Fatalf("Notify(%q) = %v, %v; an odd ack link must not stop the alarm", bad, res.Verdict, res.Err)
		}
		h := srv.next(t).header
		if h.Get("Click") != "" || h.Get("Actions") != "" {
			t.Errorf("ack link %q: Click %q, Actions %q; want none", bad, h.Get("Click"), h.Get("Actions"))
		}
		if strings.Contains(logs.String(), bad) {
			t.Errorf("the log repeats the ack link %q", bad)
		}
	}
	if !strings.Contains(logs.String(), "ack link left out") {
		t.Errorf("no warning logged for the dropped ack link; logs:\n%s", logs.String())
	}
}

func TestNotifyBodyAndTitleFromOddEvents(t *testing.T) {
	cases := []struct {
		name      string
		edit      func(*alarm.Event)
		wantTitle string
		wantPrio  string
		wantTags  string
		wantBody  string
	}{
		{
			name:      "multi-line text is sent on one line",
			edit:      func(ev *alarm.Event) { ev.Text = "*** SpO2 84 %\r\nroom-1\tnow" },
			wantTitle: "*** SpO2 low — room-1", wantPrio: "5", wantTags: "rotating_light,physiological",
			wantBody: "*** SpO2 84 %  room-1 now",
		},
		{
			name:      "text without marker gets it",
			edit:      func(ev *alarm.Event) { ev.Text = "SpO2 84 %" },
			wantTitle: "*** SpO2 low — room-1", wantPrio: "5", wantTags: "rotating_light,physiological",
			wantBody: "*** SpO2 84 %",
		},
		{
			name:      "empty text is composed from the fields",
			edit:      func(ev *alarm.Event) { ev.Text = "" },
			wantTitle: "*** SpO2 low — room-1", wantPrio: "5", wantTags: "rotating_light,physiological",
			wantBody: "*** SpO2 low: 84 % (limit 85 %), room-1, device oximeter-1",
		},
		{
			name: "unknown priority is sent as high, never quieter",
			edit: func(ev *alarm.Event) {
				ev.Priority = 0
				ev.Text = "SpO2 84 %"
			},
			wantTitle: "*** SpO2 low — room-1", wantPrio: "5", wantTags: "rotating_light,physiological",
			wantBody: "*** SpO2 84 %",
		},
		{
			name: "technical alarm without metric",
			edit: func(ev *alarm.Event) {
				*ev = alarm.Event{AlarmID: "sensor-off/oximeter-1", Phase: alarm.PhaseStart, Kind: alarm.Technical,
					Priority: alarm.Medium, State: alarm.Active, Condition: "sensor_off", Room: "room-1", Device: "oximeter-1"}
			},
			wantTitle: "** Sensor off — room-1", wantPrio: "4", wantTags: "warning,technical",
			wantBody: "** Sensor off, room-1, device oximeter-1",
		},
		{
			name: "non-ASCII room travels encoded",
			edit: func(ev *alarm.Event) {
				ev.Room = "salle-été"
				ev.Metric = "nibp_systolic"
				ev.Condition = "above"
			},
			wantTitle: "*** Systolic BP high — salle-été", wantPrio: "5", wantTags: "rotating_light,physiological",
			wantBody: "*** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
		{
			name:      "no room, no kind",
			edit:      func(ev *alarm.Event) { ev.Room, ev.Kind, ev.Metric, ev.Condition = "", "", "", "" },
			wantTitle: "*** Unknown alarm", wantPrio: "5", wantTags: "rotating_light",
			wantBody: "*** SpO2 84 % (limit 85 %), room-1, oximeter-1",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, nil)
			n := newNotifier(t, Config{URL: srv.topicURL()}, nil)
			ev := spo2Event(alarm.High, alarm.PhaseStart, alarm.Active)
			ev.AckURL = ""
			tc.edit(&ev)
			if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
				t.Fatalf("Notify = %v, %v", res.Verdict, res.Err)
			}
			got := srv.next(t)
			checkHeaders(t, got.header, map[string]string{
				"Title": tc.wantTitle, "X-Priority": tc.wantPrio, "Tags": tc.wantTags, "Content-Type": "text/plain; charset=utf-8",
			})
			if got.body != tc.wantBody {
				t.Errorf("body = %q, want %q", got.body, tc.wantBody)
			}
		})
	}
}

func TestNotifyBodyStaysWithinNtfysMessageLimit(t *testing.T) {
	srv := newServer(t, nil)
	n := newNotifier(t, Config{URL: srv.topicURL()}, nil)
	ev := spo2Event(alarm.High, alarm.PhaseStart, alarm.Active)
	ev.Text = "*** " + strings.Repeat("é", 5000)
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("Notify = %v, %v", res.Verdict, res.Err)
	}
	body := srv.next(t).body
	if len(body) > maxMessageBytes || !strings.HasPrefix(body, "*** éé") || !strings.HasSuffix(body, "é") {
		t.Errorf("body of %d bytes, starts %q, ends %q; want at most %d bytes of whole runes", len(body), body[:10], body[len(body)-4:], maxMessageBytes)
	}
}

func TestNotifyVerdictByStatus(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		status      int
		retryAfter  string
		body        string
		want        notify.Verdict
		wantAfter   time.Duration
		wantDetail  string
		wantRetries int // requests the server must see: 1, never a followed redirect
	}{
		{status: 200, want: notify.Delivered},
		{status: 202, want: notify.Delivered},
		{status: 400, body: `{"code":40007,"http":400,"error":"invalid request: actions invalid"}`, want: notify.GiveUp, wantDetail: "invalid request: actions invalid"},
		{status: 401, body: `{"code":40101,"http":401,"error":"unauthorized","link":"https://ntfy.sh/docs/publish/#authentication"}`, want: notify.GiveUp, wantDetail: "unauthorized"},
		{status: 403, body: `{"code":40301,"http":403,"error":"forbidden"}`, want: notify.GiveUp, wantDetail: "forbidden"},
		{status: 404, body: "<html>not found</html>", want: notify.GiveUp},
		{status: 413, want: notify.GiveUp},
		{status: 301, want: notify.GiveUp, wantDetail: "redirect not followed; set url to the topic's final address"},
		{status: 302, want: notify.GiveUp, wantDetail: "redirect not followed; set url to the topic's final address"},
		{status: 408, want: notify.Retry},
		{status: 429, retryAfter: "7", body: `{"code":42901,"http":429,"error":"limit reached: too many requests"}`, want: notify.Retry, wantAfter: 7 * time.Second, wantDetail: "limit reached: too many requests"},
		{status: 429, want: notify.Retry},
		{status: 429, retryAfter: "86400", want: notify.Retry, wantAfter: notify.MaxRetryAfter},
		{status: 429, retryAfter: "soon", want: notify.Retry},
		{status: 503, retryAfter: now.Add(30 * time.Second).Format(http.TimeFormat), want: notify.Retry, wantAfter: 30 * time.Second},
		{status: 503, retryAfter: now.Add(-time.Minute).Format(http.TimeFormat), want: notify.Retry},
		{status: 500, body: `{"code":50001,"http":500,"error":"internal server error"}`, want: notify.Retry, wantDetail: "internal server error"},
		{status: 502, want: notify.Retry},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status)+"/"+tc.retryAfter, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				if tc.status >= 300 && tc.status < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			n := newNotifier(t, Config{URL: srv.topicURL(), TokenFile: writeFile(t, "token", testToken)}, nil)
			n.now = func() time.Time { return now }
			res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart, alarm.Active))
			if res.Verdict != tc.want || res.RetryAfter != tc.wantAfter {
				t.Fatalf("Notify = %v after %v (%v); want %v after %v", res.Verdict, res.RetryAfter, res.Err, tc.want, tc.wantAfter)
			}
			srv.next(t)
			select {
			case r := <-srv.requests:
				t.Errorf("a second request %s %s: the redirect was followed", r.method, r.path)
			default:
			}
			if tc.want == notify.Delivered {
				if res.Err != nil {
					t.Errorf("Err = %v on delivery", res.Err)
				}
				return
			}
			var se *StatusError
			if !errors.As(res.Err, &se) || se.Code != tc.status || se.Detail != tc.wantDetail {
				t.Errorf("Err = %v; want a StatusError %d with detail %q", res.Err, tc.status, tc.wantDetail)
			}
		})
	}
}

func TestNotifyTimeoutIsRetry(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	n := newNotifier(t, Config{URL: srv.topicURL(), Timeout: 100 * time.Millisecond}, nil)
	res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart, alarm.Active))
	if res.Verdict != notify.Retry || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("Notify = %v, %v; want retry after the deadline", res.Verdict, res.Err)
	}
	if strings.Contains(res.Err.Error(), testTopic) {
		t.Errorf("error %q shows the topic", res.Err)
	}
}

func TestNotifyHonoursTheCallersDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	n := newNotifier(t, Config{URL: srv.topicURL(), Timeout: time.Hour}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if res := n.Notify(ctx, spo2Event(alarm.High, alarm.PhaseStart, alarm.Active)); res.Verdict != notify.Retry {
		t.Fatalf("Notify = %v, %v; want retry", res.Verdict, res.Err)
	}
}

func TestNotifyUnreachableServerIsRetry(t *testing.T) {
	srv := newServer(t, nil)
	topicURL := srv.topicURL()
	srv.Close()
	n := newNotifier(t, Config{URL: topicURL}, nil)
	res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart, alarm.Active))
	if res.Verdict != notify.Retry || res.Err == nil {
		t.Fatalf("Notify = %v, %v; want retry", res.Verdict, res.Err)
	}
	if strings.Contains(res.Err.Error(), testTopic) {
		t.Errorf("error %q shows the topic", res.Err)
	}
}

func TestSecretsNeverInErrorsNorLogs(t *testing.T) {
	const password = "PASSWORD-very-secret-42"
	var logs lockedBuffer
	logger := debugLogger(&logs)
	var errs []string

	status := make(chan int, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(<-status)
		// A hostile or broken server echoing the credentials back.
		_, _ = io.WriteString(w, `{"error":"bad auth `+r.Header.Get("Authorization")+`"}`)
	})
	configs := []Config{
		{Name: "bearer", URL: srv.topicURL(), TokenFile: writeFile(t, "token", testToken)},
		{Name: "basic", URL: srv.topicURL(), Username: "nurse", PasswordFile: writeFile(t, "password", password)},
	}
	for _, c := range configs {
		n := newNotifier(t, c, logger)
		for _, code := range []int{200, 401, 429, 500} {
			status <- code
			res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart, alarm.Active))
			srv.next(t)
			if res.Err != nil {
				errs = append(errs, res.Err.Error())
			}
		}
	}
	// Network failure and timeout paths.
	down := newServer(t, nil)
	downURL := down.topicURL()
	down.Close()
	n := newNotifier(t, Config{Name: "down", URL: downURL, TokenFile: writeFile(t, "token", testToken)}, logger)
	if res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart, alarm.Active)); res.Err != nil {
		errs = append(errs, res.Err.Error())
	}
	// Construction errors around the secret files.
	for _, c := range []Config{
		{Name: "x", URL: srv.topicURL(), TokenFile: writeFile(t, "token", "tk_ab "+testToken)},
		{Name: "x", URL: srv.topicURL(), TokenFile: writeFile(t, "token", testToken+"\n"+testToken)},
		{Name: "x", URL: srv.topicURL(), Username: "nurse", PasswordFile: writeFile(t, "password", password+"\n"+password)},
		{Name: "x", URL: "https://user:" + password + "@ntfy.example/" + testTopic},
		{Name: "x", URL: "https://ntfy.example/" + testTopic + "?auth=" + password},
	} {
		if _, err := New(c, logger); err == nil {
			t.Fatalf("New(%+v) accepted a bad config", c.Name)
		} else {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) < 10 {
		t.Fatalf("only %d errors collected; the test lost its coverage", len(errs))
	}
	basic := base64.StdEncoding.EncodeToString([]byte("nurse:" + password))
	for _, secret := range []string{testToken, password, basic, testTopic} {
		for _, e := range errs {
			if strings.Contains(e, secret) {
				t.Errorf("error %q contains a secret", e)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain a secret %q:\n%s", secret, logs.String())
		}
	}
}

func TestNewRejectsBadConfigNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	token := writeFile(t, "token", testToken)
	password := writeFile(t, "password", "pw")
	const topicURL = "https://ntfy.example/" + testTopic
	cases := []struct {
		name    string
		config  Config
		wantKey string
	}{
		{"no name", Config{Name: " ", URL: topicURL}, "name"},
		{"no url", Config{Name: "p"}, "url"},
		{"relative url", Config{Name: "p", URL: "ntfy.example/" + testTopic}, "url"},
		{"ftp url", Config{Name: "p", URL: "ftp://ntfy.example/" + testTopic}, "url"},
		{"credentials in url", Config{Name: "p", URL: "https://u:p@ntfy.example/" + testTopic}, "url"},
		{"query in url", Config{Name: "p", URL: topicURL + "?title=x"}, "url"},
		{"no topic", Config{Name: "p", URL: "https://ntfy.example/"}, "url"},
		{"bad topic", Config{Name: "p", URL: "https://ntfy.example/my%20topic"}, "url"},
		{"topic too long", Config{Name: "p", URL: "https://ntfy.example/" + strings.Repeat("a", 65)}, "url"},
		{"negative timeout", Config{Name: "p", URL: topicURL, Timeout: -time.Second}, "timeout"},
		{"tag with comma", Config{Name: "p", URL: topicURL, Tags: []string{"a,b"}}, "tags"},
		{"empty tag", Config{Name: "p", URL: topicURL, Tags: []string{"a", " "}}, "tags"},
		{"tag with newline", Config{Name: "p", URL: topicURL, Tags: []string{"a\nb"}}, "tags"},
		{"token and basic", Config{Name: "p", URL: topicURL, TokenFile: token, Username: "u", PasswordFile: password}, "token_file"},
		{"token and username", Config{Name: "p", URL: topicURL, TokenFile: token, Username: "u"}, "token_file"},
		{"missing token file", Config{Name: "p", URL: topicURL, TokenFile: filepath.Join(dir, "absent")}, "token_file"},
		{"token file is a directory", Config{Name: "p", URL: topicURL, TokenFile: dir}, "token_file"},
		{"empty token file", Config{Name: "p", URL: topicURL, TokenFile: writeFile(t, "empty", " \n")}, "token_file"},
		{"huge token file", Config{Name: "p", URL: topicURL, TokenFile: writeFile(t, "huge", strings.Repeat("a", notify.MaxSecretFileBytes+1))}, "token_file"},
		{"two tokens", Config{Name: "p", URL: topicURL, TokenFile: writeFile(t, "two", "tk_a tk_b")}, "token_file"},
		{"username without password", Config{Name: "p", URL: topicURL, Username: "u"}, "password_file"},
		{"password without username", Config{Name: "p", URL: topicURL, PasswordFile: password}, "username"},
		{"username with colon", Config{Name: "p", URL: topicURL, Username: "a:b", PasswordFile: password}, "username"},
		{"empty password file", Config{Name: "p", URL: topicURL, Username: "u", PasswordFile: writeFile(t, "nopw", "\r\n")}, "password_file"},
		{"missing password file", Config{Name: "p", URL: topicURL, Username: "u", PasswordFile: filepath.Join(dir, "absent")}, "password_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := New(tc.config, slog.New(slog.DiscardHandler))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("New = %v, %v; want a ConfigError", n, err)
			}
			if ce.Key != tc.wantKey || ce.Channel != tc.config.Name {
				t.Errorf("error %q names key %q, want %q", err, ce.Key, tc.wantKey)
			}
			if !strings.Contains(err.Error(), tc.wantKey+":") {
				t.Errorf("error %q does not name the key %s", err, tc.wantKey)
			}
		})
	}
}

func TestNewDefaultsAndAcceptsTopicBehindAPath(t *testing.T) {
	n, err := New(Config{Name: "p", URL: "https://example.org/ntfy/" + testTopic + "/"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "p" || n.timeout != notify.DefaultTimeout || n.url != "https://example.org/ntfy/"+testTopic || n.authorization != "" {
		t.Errorf("notifier = name %q, timeout %v, url %q, auth %q", n.Name(), n.timeout, n.url, n.authorization)
	}
	var _ notify.Notifier = n
}

func TestNewWarnsWhenCredentialsGoOverPlainHTTP(t *testing.T) {
	var logs lockedBuffer
	n := newNotifier(t, Config{URL: "http://ntfy.lan/" + testTopic, TokenFile: writeFile(t, "token", testToken)}, debugLogger(&logs))
	if n.authorization != "Bearer "+testToken {
		t.Fatalf("authorization not set from the token file")
	}
	if !strings.Contains(logs.String(), "unencrypted") {
		t.Errorf("no warning about plain http; logs:\n%s", logs.String())
	}
}
