package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// The server and the notifier start goroutines; every test must leave none
// behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testUser     = "vigil@clinic.example"
	testPassword = "s3cret pass-phrase"
)

var (
	testNow   = time.Date(2026, 3, 1, 10, 0, 20, 0, time.UTC)
	testLocal = time.FixedZone("CET", 3600)
)

func spo2Event(phase alarm.Phase) alarm.Event {
	v, l := 84.0, 85.0
	ev := alarm.Event{
		AlarmID: "spo2-low-high/oximeter-1", EventID: "ev-20260301-1", Phase: phase,
		Kind: alarm.Physiological, Priority: alarm.High, State: alarm.Active,
		Metric: "spo2", Value: &v, Unit: "%", Limit: &l, Condition: "below",
		Text: "*** spo2 84 % (limit: at or below 85 %), oximeter-1, room room-1: active",
		Site: "clinic-north", Room: "room-1", Device: "oximeter-1",
		Onset:  time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		Sent:   time.Date(2026, 3, 1, 10, 0, 15, 0, time.UTC),
		AckURL: "https://vigil.example/ack?alarm=spo2&sig=abc",
	}
	switch phase {
	case alarm.PhaseUpdate:
		v := 80.0
		ev.Value = &v
		ev.Text = "*** spo2 80 % (limit: at or below 85 %), oximeter-1, room room-1: active"
		ev.Sent = ev.Sent.Add(30 * time.Second)
	case alarm.PhaseEnd:
		ev.State = alarm.Resolved
		ev.Text = "*** spo2 80 % (limit: at or below 85 %), oximeter-1, room room-1: resolved"
		ev.Sent = ev.Sent.Add(2 * time.Minute)
	}
	return ev
}

// startTLSConfig is a channel to ts over STARTTLS with AUTH.
func startTLSConfig(t *testing.T, ts *testServer) Config {
	return Config{
		Name:         "mail-night",
		Smarthost:    ts.addr,
		From:         "Vigil <vigil@clinic.example>",
		To:           []string{"Night Nurse <nurse@clinic.example>", "oncall@clinic.example"},
		Username:     testUser,
		PasswordFile: writeSecret(t, testPassword+"\n"),
		CAFile:       ts.caFile,
		Hello:        "room1.clinic.example",
		Version:      "1.4.0",
	}
}

func newNotifier(t *testing.T, c Config) *Notifier {
	t.Helper()
	n, err := New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	n.now = func() time.Time { return testNow }
	n.local = testLocal
	return n
}

func notifyWithin(t *testing.T, n *Notifier, ctx context.Context, ev alarm.Event) notify.Result {
	t.Helper()
	done := make(chan notify.Result, 1)
	go func() { done <- n.Notify(ctx, ev) }()
	select {
	case res := <-done:
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("Notify did not return")
		return notify.Result{}
	}
}

// parsed is one received mail.
type parsed struct {
	header mail.Header
	body   string // decoded from quoted-printable, "\n" line ends
}

func parseMail(t *testing.T, raw []byte) parsed {
	t.Helper()
	for i, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line %d is %d octets, over RFC 5322's 998", i+1, len(line))
		}
	}
	for i, c := range raw {
		if c > 126 || (c < 32 && c != '\r' && c != '\n') {
			t.Fatalf("byte %d of the message is %#x: the message must be 7-bit text", i, c)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, raw)
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding = %q", cte)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatalf("body is not quoted-printable: %v", err)
	}
	return parsed{header: msg.Header, body: strings.ReplaceAll(string(body), "\r\n", "\n")}
}

func decodedSubject(t *testing.T, h mail.Header) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject %q does not decode: %v", h.Get("Subject"), err)
	}
	return s
}

var messageIDPattern = regexp.MustCompile(`^<vigil\.[0-9a-f]{32}(\.(update|end)\.[0-9a-f]{32})?@clinic\.example>$`)

func TestStartTLSConversation(t *testing.T) {
	ts := startServer(t, serverOptions{startTLS: true, username: testUser, password: testPassword})
	n := newNotifier(t, startTLSConfig(t, ts))

	res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart))
	if res.Verdict != notify.Delivered || res.Err != nil {
		t.Fatalf("verdict %v, err %v; want delivered", res.Verdict, res.Err)
	}

	sessions := ts.sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d connections, want 1", len(sessions))
	}
	tr := sessions[0]
	if tr.Hello != "room1.clinic.example" {
		t.Errorf("EHLO %q, want the configured hello", tr.Hello)
	}
	if want := []string{"auth", "mail", "rcpt", "rcpt", "data"}; !slices.Equal(tr.Steps, want) {
		t.Errorf("steps %v, want %v", tr.Steps, want)
	}
	if !tr.AuthTLS {
		t.Error("AUTH came before STARTTLS: the password crossed in clear")
	}
	if tr.AuthUser != testUser || tr.AuthPass != testPassword {
		t.Errorf("AUTH PLAIN user %q password %q, want the configured ones (trailing newline dropped)", tr.AuthUser, tr.AuthPass)
	}
	if tr.From != "vigil@clinic.example" {
		t.Errorf("MAIL FROM %q", tr.From)
	}
	if want := []string{"nurse@clinic.example", "oncall@clinic.example"}; !slices.Equal(tr.Rcpts, want) {
		t.Errorf("RCPT TO %v, want %v", tr.Rcpts, want)
	}
	if !tr.DataTLS {
		t.Error("message sent outside TLS")
	}

	m := parseMail(t, tr.Data)
	h := m.header
	wantHeaders := map[string]string{
		"From":           `"Vigil" <vigil@clinic.example>`,
		"To":             `"Night Nurse" <nurse@clinic.example>, <oncall@clinic.example>`,
		"Mime-Version":   "1.0",
		"Content-Type":   "text/plain; charset=utf-8",
		"X-Priority":     "1",
		"Importance":     "high",
		"Auto-Submitted": "auto-generated",
		"X-Mailer":       "vigil/1.4.0",
		"In-Reply-To":    "",
		"References":     "",
	}
	for k, want := range wantHeaders {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if d, err := h.Date(); err != nil || !d.Equal(testNow) {
		t.Errorf("Date %q (%v), want %v", h.Get("Date"), err, testNow)
	}
	if got, want := decodedSubject(t, h), "*** spo2 84 % (limit: at or below 85 %), oximeter-1, room room-1: active"; got != want {
		t.Errorf("Subject %q, want %q", got, want)
	}
	if id := h.Get("Message-Id"); !messageIDPattern.MatchString(id) || strings.Contains(id, ".update.") {
		t.Errorf("Message-ID %q is not a start id at the From domain", id)
	}

	wantBody := `*** spo2 84 % (limit: at or below 85 %), oximeter-1, room room-1: active

Priority: *** high
State: active
Kind: physiological
Room: room-1
Site: clinic-north
Device: oximeter-1
Metric: spo2
Condition: below
Value: 84 %
Limit: 85 %
Onset: 2026-03-01T10:00:00Z (local 2026-03-01 11:00:00 CET)
Sent: 2026-03-01T10:00:15Z (local 2026-03-01 11:00:15 CET)
Alarm: spo2-low-high/oximeter-1
Event: ev-20260301-1

Acknowledge: https://vigil.example/ack?alarm=spo2&sig=abc

Email is a secondary alarm path: the bedside monitor stays primary.
`
	if m.body != wantBody {
		t.Errorf("body:\n%s\nwant:\n%s", m.body, wantBody)
	}
}

func TestThreadsOneOccurrence(t *testing.T) {
	ts := startServer(t, serverOptions{startTLS: true, username: testUser, password: testPassword})
	n := newNotifier(t, startTLSConfig(t, ts))

	for _, phase := range []alarm.Phase{alarm.PhaseStart, alarm.PhaseUpdate, alarm.PhaseEnd} {
		if res := notifyWithin(t, n, context.Background(), spo2Event(phase)); res.Verdict != notify.Delivered {
			t.Fatalf("%s: verdict %v, err %v", phase, res.Verdict, res.Err)
		}
	}
	sessions := ts.sessions()
	if len(sessions) != 3 {
		t.Fatalf("%d connections, want 3", len(sessions))
	}
	start, update, end := parseMail(t, sessions[0].Data), parseMail(t, sessions[1].Data), parseMail(t, sessions[2].Data)
	startID := start.header.Get("Message-Id")
	ids := []string{startID, update.header.Get("Message-Id"), end.header.Get("Message-Id")}
	for _, id := range ids {
		if !messageIDPattern.MatchString(id) {
			t.Errorf("Message-ID %q has not the expected form", id)
		}
	}
	if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
		t.Errorf("Message-IDs are not distinct: %v", ids)
	}
	for name, m := range map[string]parsed{"update": update, "end": end} {
		if got := m.header.Get("In-Reply-To"); got != startID {
			t.Errorf("%s In-Reply-To %q, want the start's %q", name, got, startID)
		}
		if got := m.header.Get("References"); got != startID {
			t.Errorf("%s References %q, want the start's %q", name, got, startID)
		}
	}
	if got := update.header.Get("X-Priority"); got != "1" {
		t.Errorf("update of a high alarm: X-Priority %q, want 1", got)
	}

	if got, want := decodedSubject(t, end.header), "*** Resolved: spo2 80 % (limit: at or below 85 %), oximeter-1, room room-1: resolved"; got != want {
		t.Errorf("end Subject %q, want %q", got, want)
	}
	if got := end.header.Get("X-Priority") + end.header.Get("Importance"); got != "" {
		t.Errorf("the end of an alarm is marked urgent: %q", got)
	}
	if !strings.HasPrefix(end.body, "RESOLVED: this alarm is over; nothing to acknowledge.\n") {
		t.Errorf("end body does not open with the resolved line:\n%s", end.body)
	}
	if strings.Contains(end.body, "Acknowledge:") {
		t.Errorf("end body offers an acknowledge link for an alarm that is over:\n%s", end.body)
	}
	if !strings.Contains(end.body, "\nState: resolved\n") {
		t.Errorf("end body lacks the state:\n%s", end.body)
	}

	// A retry of the same event carries the same Message-ID, so a mail app
	// shows a duplicate once.
	if res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseUpdate)); res.Verdict != notify.Delivered {
		t.Fatalf("retry: %v %v", res.Verdict, res.Err)
	}
	retry := parseMail(t, ts.sessions()[3].Data)
	if got := retry.header.Get("Message-Id"); got != ids[1] {
		t.Errorf("retried update Message-ID %q, want %q", got, ids[1])
	}
}

func TestImplicitTLS(t *testing.T) {
	ts := startServer(t, serverOptions{implicitTLS: true, username: testUser, password: testPassword})
	c := startTLSConfig(t, ts)
	c.TLS = TLSImplicit
	n := newNotifier(t, c)

	if res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart)); res.Verdict != notify.Delivered {
		t.Fatalf("verdict %v, err %v", res.Verdict, res.Err)
	}
	tr := ts.sessions()[0]
	if !tr.AuthTLS || !tr.DataTLS || tr.AuthPass != testPassword {
		t.Errorf("implicit TLS conversation: auth over TLS %v, data over TLS %v", tr.AuthTLS, tr.DataTLS)
	}
}

func TestNoneToLoopbackRelay(t *testing.T) {
	ts := startServer(t, serverOptions{})
	n := newNotifier(t, Config{Name: "relay", Smarthost: ts.addr, TLS: TLSNone,
		From: "vigil@clinic.example", To: []string{"nurse@clinic.example"}})

	if res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart)); res.Verdict != notify.Delivered {
		t.Fatalf("verdict %v, err %v", res.Verdict, res.Err)
	}
	tr := ts.sessions()[0]
	if want := []string{"mail", "rcpt", "data"}; !slices.Equal(tr.Steps, want) || tr.DataTLS {
		t.Errorf("steps %v (TLS %v), want %v in clear", tr.Steps, tr.DataTLS, want)
	}
	if h, _ := helloName(""); tr.Hello != h {
		t.Errorf("EHLO %q, want the host name %q", tr.Hello, h)
	}
}

func TestVerdicts(t *testing.T) {
	reply := func(code int, msg string) *gosmtp.SMTPError {
		return &gosmtp.SMTPError{Code: code, EnhancedCode: gosmtp.NoEnhancedCode, Message: msg}
	}
	tests := []struct {
		name    string
		opts    serverOptions
		config  func(c *Config)
		want    notify.Verdict
		command string // the ReplyError's command, when the verdict comes from a reply
		code    int
		steps   []string // what the server saw
	}{
		{
			name: "MAIL FROM 451", opts: serverOptions{mailReply: reply(451, "greylisted, try again later")},
			want: notify.Retry, command: "MAIL FROM", code: 451, steps: []string{"auth", "mail"},
		},
		{
			name: "MAIL FROM 550", opts: serverOptions{mailReply: reply(550, "sender rejected")},
			want: notify.GiveUp, command: "MAIL FROM", code: 550, steps: []string{"auth", "mail"},
		},
		{
			name: "RCPT TO 550 for every recipient",
			opts: serverOptions{rcptReplies: map[string]*gosmtp.SMTPError{
				"nurse@clinic.example": reply(550, "no such mailbox"), "oncall@clinic.example": reply(550, "no such mailbox")}},
			want: notify.GiveUp, command: "RCPT TO", code: 550, steps: []string{"auth", "mail"},
		},
		{
			name: "RCPT TO 550 for one recipient: the other gets it",
			opts: serverOptions{rcptReplies: map[string]*gosmtp.SMTPError{"nurse@clinic.example": reply(550, "no such mailbox")}},
			want: notify.GiveUp, command: "RCPT TO", code: 550, steps: []string{"auth", "mail", "rcpt", "data"},
		},
		{
			name: "RCPT TO 452 for one recipient: the other gets it, retry",
			opts: serverOptions{rcptReplies: map[string]*gosmtp.SMTPError{"oncall@clinic.example": reply(452, "mailbox full")}},
			want: notify.Retry, command: "RCPT TO", code: 452, steps: []string{"auth", "mail", "rcpt", "data"},
		},
		{
			name: "end of data 451", opts: serverOptions{dataReply: reply(451, "local error in processing")},
			want: notify.Retry, command: "end of data", code: 451, steps: []string{"auth", "mail", "rcpt", "rcpt", "data"},
		},
		{
			name: "end of data 554", opts: serverOptions{dataReply: reply(554, "message rejected as spam")},
			want: notify.GiveUp, command: "end of data", code: 554, steps: []string{"auth", "mail", "rcpt", "rcpt", "data"},
		},
		{
			name: "AUTH 535", config: func(c *Config) { c.PasswordFile = writeSecret(t, "wrong password") },
			want: notify.GiveUp, command: "AUTH", code: 535, steps: []string{"auth"},
		},
		{
			name: "AUTH 454 temporary", config: func(c *Config) { c.PasswordFile = writeSecret(t, "wrong password") },
			opts: serverOptions{authReply: reply(454, "temporary authentication failure")},
			want: notify.Retry, command: "AUTH", code: 454, steps: []string{"auth"},
		},
		{
			name: "no STARTTLS offered", opts: serverOptions{startTLS: false},
			want: notify.GiveUp, steps: nil,
		},
		{
			name: "server certificate not trusted", config: func(c *Config) { c.CAFile = "" },
			want: notify.GiveUp, steps: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.username, opts.password = testUser, testPassword
			if tt.name != "no STARTTLS offered" {
				opts.startTLS = true
			}
			ts := startServer(t, opts)
			c := startTLSConfig(t, ts)
			if tt.config != nil {
				tt.config(&c)
			}
			n := newNotifier(t, c)
			res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart))
			if res.Verdict != tt.want || res.Err == nil {
				t.Fatalf("verdict %v, err %v; want %v with an error", res.Verdict, res.Err, tt.want)
			}
			secretFree(t, res, testPassword)
			if !strings.HasPrefix(res.Err.Error(), `email mail-night: `) {
				t.Errorf("error %q does not name the channel", res.Err)
			}
			var re *ReplyError
			if tt.command != "" {
				if !errors.As(res.Err, &re) || re.Command != tt.command || re.Code != tt.code {
					t.Errorf("error %v, want a ReplyError for %s %d", res.Err, tt.command, tt.code)
				}
			} else if errors.As(res.Err, &re) {
				t.Errorf("error %v is a server reply; want a client-side refusal", res.Err)
			}
			var steps []string
			if s := ts.sessions(); len(s) > 0 {
				steps = s[0].Steps
			}
			if !slices.Equal(steps, tt.steps) {
				t.Errorf("server saw %v, want %v", steps, tt.steps)
			}
			switch tt.name {
			case "server certificate not trusted":
				var certErr *tls.CertificateVerificationError
				if !errors.As(res.Err, &certErr) || !strings.Contains(res.Err.Error(), "ca_file") {
					t.Errorf("error %v, want a certificate error pointing to ca_file", res.Err)
				}
			case "no STARTTLS offered":
				if !errors.Is(res.Err, ErrStartTLSNotOffered) {
					t.Errorf("error %v, want ErrStartTLSNotOffered", res.Err)
				}
			case "RCPT TO 550 for one recipient: the other gets it":
				if got := ts.sessions()[0].Rcpts; !slices.Equal(got, []string{"oncall@clinic.example"}) {
					t.Errorf("delivered to %v", got)
				}
				if !strings.Contains(res.Err.Error(), "sent to 1 of 2 recipients") || !strings.Contains(res.Err.Error(), "nurse@clinic.example") {
					t.Errorf("error %q does not say who was refused", res.Err)
				}
			}
		})
	}
}

// A server that echoes the credentials in its refusal must not get them
// into the error: neither the password nor the AUTH PLAIN response.
func TestAuthErrorNeverCarriesThePassword(t *testing.T) {
	echo := &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8},
		Message: "bad credentials " + testPassword + " in " + plainResponse(testUser, "x"+testPassword)}
	ts := startServer(t, serverOptions{startTLS: true, username: testUser, password: "other", authReply: echo})
	c := startTLSConfig(t, ts)
	n := newNotifier(t, c)
	res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart))
	if res.Verdict != notify.GiveUp {
		t.Fatalf("verdict %v, err %v; want give_up", res.Verdict, res.Err)
	}
	secretFree(t, res, testPassword, plainResponse(testUser, testPassword))
	if !strings.Contains(res.Err.Error(), notify.Redacted) {
		t.Errorf("error %q: the echoed password was not redacted", res.Err)
	}
}

func TestServerThatHangsIsCutByTheDeadline(t *testing.T) {
	t.Run("no greeting", func(t *testing.T) {
		addr := hangingListener(t)
		n := newNotifier(t, Config{Name: "x", Smarthost: addr, From: "vigil@clinic.example",
			To: []string{"nurse@clinic.example"}, Timeout: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		res := notifyWithin(t, n, ctx, spo2Event(alarm.PhaseStart))
		if res.Verdict != notify.Retry || !errors.Is(res.Err, context.DeadlineExceeded) {
			t.Fatalf("verdict %v, err %v; want retry after the caller's deadline", res.Verdict, res.Err)
		}
	})
	t.Run("no answer to the message, channel timeout", func(t *testing.T) {
		ts := startServer(t, serverOptions{startTLS: true, username: testUser, password: testPassword, hangInData: true})
		c := startTLSConfig(t, ts)
		c.Timeout = 500 * time.Millisecond
		n := newNotifier(t, c)
		res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart))
		if res.Verdict != notify.Retry || !errors.Is(res.Err, context.DeadlineExceeded) {
			t.Fatalf("verdict %v, err %v; want retry after the channel's timeout", res.Verdict, res.Err)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		addr := hangingListener(t)
		n := newNotifier(t, Config{Name: "x", Smarthost: addr, From: "vigil@clinic.example",
			To: []string{"nurse@clinic.example"}})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		res := notifyWithin(t, n, ctx, spo2Event(alarm.PhaseStart))
		if res.Verdict != notify.Retry || !errors.Is(res.Err, context.Canceled) {
			t.Fatalf("verdict %v, err %v; want retry on cancel", res.Verdict, res.Err)
		}
	})
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	n := newNotifier(t, Config{Name: "x", Smarthost: addr, From: "vigil@clinic.example", To: []string{"nurse@clinic.example"}})
	res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart))
	if res.Verdict != notify.Retry || res.Err == nil {
		t.Fatalf("verdict %v, err %v; want retry", res.Verdict, res.Err)
	}
}

// tls: tls against a server that answers in clear (a STARTTLS port) is a
// configuration mistake: give up and say so, rather than retry forever.
func TestImplicitTLSAgainstPlainServer(t *testing.T) {
	ts := startServer(t, serverOptions{startTLS: true})
	n := newNotifier(t, Config{Name: "x", Smarthost: ts.addr, TLS: TLSImplicit, CAFile: ts.caFile,
		From: "vigil@clinic.example", To: []string{"nurse@clinic.example"}})
	res := notifyWithin(t, n, context.Background(), spo2Event(alarm.PhaseStart))
	var recordErr tls.RecordHeaderError
	if res.Verdict != notify.GiveUp || !errors.As(res.Err, &recordErr) || !strings.Contains(res.Err.Error(), "starttls") {
		t.Fatalf("verdict %v, err %v; want give_up for a server that does not speak TLS first", res.Verdict, res.Err)
	}
}
