package pushover

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// The form fields of /1/messages.json (https://pushover.net/api#messages),
// exactly, for each alarm priority.
func TestNotifySendsPushoverMessageFields(t *testing.T) {
	high := spo2Event(alarm.High, alarm.PhaseStart)
	medium := spo2Event(alarm.Medium, alarm.PhaseStart)
	low := spo2Event(alarm.Low, alarm.PhaseUpdate)
	low.AckURL = ""

	wantBody := "spo2: 84 % (limit 85 %, below)\n" +
		"Room: room-3 (site clinic-north)\n" +
		"Device: oximeter-1\n"
	cases := []struct {
		name string
		ev   alarm.Event
		want url.Values
	}{
		{"high is emergency with retry and expire", high, url.Values{
			"token":     {testToken},
			"user":      {testUserKey},
			"title":     {"*** SpO2 84 % below 85 % in room 3"},
			"message":   {wantBody + "Priority: high, kind: physiological, state: active\nOnset: 2025-03-04 10:15:00 UTC"},
			"priority":  {"2"},
			"retry":     {"90"},
			"expire":    {"1800"},
			"url":       {"https://vigil.local/ack/spo2?sig=abc123"},
			"url_title": {"Acknowledge"},
			"sound":     {"siren"},
			"device":    {"nurse-phone,ward_tablet"},
			"timestamp": {unix(high.Sent)},
		}},
		{"medium is high priority", medium, url.Values{
			"token":     {testToken},
			"user":      {testUserKey},
			"title":     {"** SpO2 84 % below 85 % in room 3"},
			"message":   {wantBody + "Priority: medium, kind: physiological, state: active\nOnset: 2025-03-04 10:15:00 UTC"},
			"priority":  {"1"},
			"url":       {"https://vigil.local/ack/spo2?sig=abc123"},
			"url_title": {"Acknowledge"},
			"sound":     {"siren"},
			"device":    {"nurse-phone,ward_tablet"},
			"timestamp": {unix(medium.Sent)},
		}},
		{"low is normal priority, no link without AckURL", low, url.Values{
			"token":     {testToken},
			"user":      {testUserKey},
			"title":     {"* SpO2 84 % below 85 % in room 3"},
			"message":   {wantBody + "Priority: low, kind: physiological, state: active\nOnset: 2025-03-04 10:15:00 UTC"},
			"priority":  {"0"},
			"sound":     {"siren"},
			"device":    {"nurse-phone,ward_tablet"},
			"timestamp": {unix(low.Sent)},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			n, _ := newTestNotifier(t, f, Config{
				Device: "nurse-phone,ward_tablet", Sound: "siren",
				Retry: 90 * time.Second, Expire: 1800 * time.Second,
			}, time.Hour)
			res := n.Notify(context.Background(), tc.ev)
			if res.Verdict != notify.Delivered {
				t.Fatalf("verdict %v (%v), want delivered", res.Verdict, res.Err)
			}
			reqs := f.all()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1: %+v", len(reqs), reqs)
			}
			r := reqs[0]
			if r.method != http.MethodPost || r.path != "/1/messages.json" {
				t.Errorf("request %s %s, want POST /1/messages.json", r.method, r.path)
			}
			if r.contentType != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type %q", r.contentType)
			}
			if len(r.query) != 0 {
				t.Errorf("query %v, want none (credentials go in the body)", r.query)
			}
			if !reflect.DeepEqual(r.form, tc.want) {
				for k := range merge(r.form, tc.want) {
					if !reflect.DeepEqual(r.form[k], tc.want[k]) {
						t.Errorf("field %s = %q, want %q", k, r.form[k], tc.want[k])
					}
				}
			}
			if strings.Contains(first(r.form, "message"), "sess-7f3a") || strings.Contains(first(r.form, "title"), "sess-7f3a") {
				t.Error("the session id went into the notification")
			}
		})
	}
}

func merge(a, b url.Values) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

// Defaults: retry 60 s, expire 3600 s; no sound or device field when not
// configured.
func TestNotifyEmergencyDefaults(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	if res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart)); res.Verdict != notify.Delivered {
		t.Fatalf("verdict %v (%v)", res.Verdict, res.Err)
	}
	form := f.only("/1/messages.json")[0].form
	if first(form, "retry") != "60" || first(form, "expire") != "3600" {
		t.Errorf("retry %q expire %q, want 60 and 3600", first(form, "retry"), first(form, "expire"))
	}
	for _, k := range []string{"sound", "device"} {
		if _, ok := form[k]; ok {
			t.Errorf("field %s sent without being configured", k)
		}
	}
	if n.receipts.count() != 1 {
		t.Errorf("%d open receipts, want 1", n.receipts.count())
	}
}

// A technical alarm has no value: the condition is shown instead.
func TestNotifyTechnicalAlarm(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	ev := alarm.Event{
		AlarmID: "device-lost/oximeter-1", EventID: "ev-9", Phase: alarm.PhaseStart,
		Kind: alarm.Technical, Priority: alarm.Medium, State: alarm.Active,
		Condition: "device_lost", Room: "room-3", Device: "oximeter-1",
		Sent: time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC),
	}
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("verdict %v (%v)", res.Verdict, res.Err)
	}
	form := f.only("/1/messages.json")[0].form
	if got := first(form, "title"); got != "** device_lost" {
		t.Errorf("title %q", got)
	}
	want := "Condition: device_lost\nRoom: room-3\nDevice: oximeter-1\nPriority: medium, kind: technical, state: active"
	if got := first(form, "message"); got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

// Title and message are cut to Pushover's limits in characters, with an
// ellipsis; invalid UTF-8 is replaced rather than sent.
func TestNotifyCutsToPushoverLimits(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	ev := spo2Event(alarm.High, alarm.PhaseStart)
	ev.Text = "*** " + strings.Repeat("é", 400) + "\xff"
	ev.Condition = strings.Repeat("ü", 2000)
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("verdict %v (%v)", res.Verdict, res.Err)
	}
	form := f.only("/1/messages.json")[0].form
	title, msg := first(form, "title"), first(form, "message")
	if got := utf8.RuneCountInString(title); got != MaxTitleRunes {
		t.Errorf("title has %d runes, want %d", got, MaxTitleRunes)
	}
	if got := utf8.RuneCountInString(msg); got != MaxMessageRunes {
		t.Errorf("message has %d runes, want %d", got, MaxMessageRunes)
	}
	if !strings.HasPrefix(title, "*** ") || !strings.HasSuffix(title, "…") || !strings.HasSuffix(msg, "…") {
		t.Errorf("cut text lost its marker or ellipsis: %q / %q", title[:10], msg[len(msg)-10:])
	}
	if !utf8.ValidString(title) || !utf8.ValidString(msg) {
		t.Error("invalid UTF-8 sent")
	}
}

// An acknowledge link longer than Pushover's URL limit is left out rather
// than cut into a broken link, and is not logged (it is signed).
func TestNotifyLeavesOutOverlongAckURL(t *testing.T) {
	f := newFakeAPI(t)
	n, logs := newTestNotifier(t, f, Config{}, time.Hour)
	ev := spo2Event(alarm.Medium, alarm.PhaseStart)
	ev.AckURL = "https://vigil.local/ack?sig=" + strings.Repeat("s", MaxURLRunes)
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("verdict %v (%v)", res.Verdict, res.Err)
	}
	form := f.only("/1/messages.json")[0].form
	if _, ok := form["url"]; ok {
		t.Error("overlong url sent")
	}
	if _, ok := form["url_title"]; ok {
		t.Error("url_title sent without url")
	}
	if strings.Contains(logs.String(), "sig=") {
		t.Error("the signed acknowledge link was logged")
	}
}

// PhaseEnd cancels the alarm's emergency receipt, then sends a normal
// priority "resolved" message, and forgets the receipt.
func TestNotifyEndCancelsEmergencyThenSendsResolved(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	ctx := context.Background()
	if res := n.Notify(ctx, spo2Event(alarm.High, alarm.PhaseStart)); res.Verdict != notify.Delivered {
		t.Fatalf("start: %v (%v)", res.Verdict, res.Err)
	}
	if res := n.Notify(ctx, spo2Event(alarm.High, alarm.PhaseEnd)); res.Verdict != notify.Delivered {
		t.Fatalf("end: %v (%v)", res.Verdict, res.Err)
	}
	reqs := f.all()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want start, cancel, resolved: %+v", len(reqs), reqs)
	}
	cancel := reqs[1]
	if cancel.method != http.MethodPost || cancel.path != "/1/receipts/"+receiptID(1)+"/cancel.json" {
		t.Errorf("cancel request %s %s", cancel.method, cancel.path)
	}
	if !reflect.DeepEqual(cancel.form, url.Values{"token": {testToken}}) {
		t.Errorf("cancel form %v, want only the token", cancel.form)
	}
	resolved := reqs[2].form
	if reqs[2].path != "/1/messages.json" || first(resolved, "priority") != "0" {
		t.Errorf("resolved message %s priority %q, want messages.json priority 0", reqs[2].path, first(resolved, "priority"))
	}
	if got := first(resolved, "title"); got != "*** RESOLVED: SpO2 84 % below 85 % in room 3" {
		t.Errorf("resolved title %q", got)
	}
	if !strings.Contains(first(resolved, "message"), "Resolved: 2025-03-04 10:15:20 UTC") {
		t.Errorf("resolved message %q lacks the resolution time", first(resolved, "message"))
	}
	for _, k := range []string{"retry", "expire"} {
		if _, ok := resolved[k]; ok {
			t.Errorf("resolved message carries %s", k)
		}
	}
	if n.receipts.count() != 0 {
		t.Errorf("%d receipts still open after end", n.receipts.count())
	}
}

// A cancel that fails transiently returns Retry before the resolved message
// is sent, and keeps the receipt, so the retried Notify cancels it and sends
// the message once.
func TestNotifyEndRetriesFailedCancel(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	ctx := context.Background()
	if res := n.Notify(ctx, spo2Event(alarm.High, alarm.PhaseStart)); res.Verdict != notify.Delivered {
		t.Fatalf("start: %v (%v)", res.Verdict, res.Err)
	}
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		if strings.HasSuffix(r.path, "/cancel.json") {
			w.Header().Set("Retry-After", "12")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": 0})
			return true
		}
		return false
	})
	end := spo2Event(alarm.High, alarm.PhaseEnd)
	res := n.Notify(ctx, end)
	if res.Verdict != notify.Retry || res.RetryAfter != 12*time.Second {
		t.Fatalf("end with failing cancel: %v after %s (%v), want retry after 12s", res.Verdict, res.RetryAfter, res.Err)
	}
	if got := len(f.only("/1/messages.json")); got != 1 {
		t.Fatalf("%d messages sent, want only the start (resolved waits for the cancel)", got)
	}
	f.setOverride(nil)
	if res := n.Notify(ctx, end); res.Verdict != notify.Delivered {
		t.Fatalf("retried end: %v (%v)", res.Verdict, res.Err)
	}
	if got := len(f.only("/1/receipts/" + receiptID(1) + "/cancel.json")); got != 2 {
		t.Errorf("%d cancel calls, want 2", got)
	}
	if got := len(f.only("/1/messages.json")); got != 2 {
		t.Errorf("%d messages, want start and one resolved", got)
	}
}

// A cancel Pushover refuses (receipt unknown or expired) is given up: the
// resolved message still goes out.
func TestNotifyEndAfterRefusedCancelStillSendsResolved(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	ctx := context.Background()
	n.Notify(ctx, spo2Event(alarm.High, alarm.PhaseStart))
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		if strings.HasSuffix(r.path, "/cancel.json") {
			writeJSON(w, http.StatusNotFound, map[string]any{"status": 0, "errors": []string{"receipt not found; may be invalid or expired"}})
			return true
		}
		return false
	})
	if res := n.Notify(ctx, spo2Event(alarm.High, alarm.PhaseEnd)); res.Verdict != notify.Delivered {
		t.Fatalf("end: %v (%v)", res.Verdict, res.Err)
	}
	if got := len(f.only("/1/messages.json")); got != 2 {
		t.Errorf("%d messages, want start and resolved", got)
	}
	if n.receipts.count() != 0 {
		t.Error("refused receipt kept")
	}
}

// Ending an alarm that had no emergency sends the resolved message only.
func TestNotifyEndWithoutReceipt(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	ctx := context.Background()
	n.Notify(ctx, spo2Event(alarm.Medium, alarm.PhaseStart))
	if res := n.Notify(ctx, spo2Event(alarm.Medium, alarm.PhaseEnd)); res.Verdict != notify.Delivered {
		t.Fatalf("end: %v (%v)", res.Verdict, res.Err)
	}
	for _, r := range f.all() {
		if r.path != "/1/messages.json" {
			t.Errorf("unexpected call %s %s", r.method, r.path)
		}
	}
}

// An acknowledged update (acknowledged through another channel) cancels the
// emergency and is itself sent at normal priority.
func TestNotifyAcknowledgedUpdateCancelsEmergency(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	ctx := context.Background()
	n.Notify(ctx, spo2Event(alarm.High, alarm.PhaseStart))
	acked := spo2Event(alarm.High, alarm.PhaseUpdate)
	acked.State = alarm.Acknowledged
	if res := n.Notify(ctx, acked); res.Verdict != notify.Delivered {
		t.Fatalf("update: %v (%v)", res.Verdict, res.Err)
	}
	if got := len(f.only("/1/receipts/" + receiptID(1) + "/cancel.json")); got != 1 {
		t.Errorf("%d cancels, want 1", got)
	}
	msgs := f.only("/1/messages.json")
	if got := first(msgs[1].form, "priority"); got != "0" {
		t.Errorf("acknowledged update priority %q, want 0", got)
	}
	if got := first(msgs[1].form, "title"); !strings.HasPrefix(got, "*** ACKNOWLEDGED: ") {
		t.Errorf("acknowledged update title %q", got)
	}
}

// HTTP outcomes map to verdicts per https://pushover.net/api#response.
func TestNotifyVerdicts(t *testing.T) {
	type answer struct {
		code       int
		retryAfter string
		body       string
	}
	cases := []struct {
		name      string
		answer    answer
		verdict   notify.Verdict
		wait      time.Duration
		errSubstr string
	}{
		{"accepted", answer{200, "", `{"status":1,"request":"r1"}`}, notify.Delivered, 0, ""},
		{"bad token", answer{400, "", `{"token":"invalid","errors":["application token is invalid"],"status":0,"request":"r2"}`}, notify.GiveUp, 0, "HTTP 400: application token is invalid"},
		{"bad user", answer{400, "", `{"user":"invalid","errors":["user identifier is not a valid user, group, or subscribed user key"],"status":0}`}, notify.GiveUp, 0, "user identifier is not a valid user"},
		{"forbidden", answer{403, "", `{"status":0,"errors":["application is disabled"]}`}, notify.GiveUp, 0, "HTTP 403"},
		{"redirect", answer{302, "", ``}, notify.GiveUp, 0, "unexpected redirect"},
		{"request timeout", answer{408, "", ``}, notify.Retry, ReceiptPollInterval, "HTTP 408"},
		{"monthly limit", answer{429, "", `{"status":0,"errors":["application over message limit"]}`}, notify.Retry, ReceiptPollInterval, "HTTP 429"},
		{"429 with Retry-After", answer{429, "120", `{"status":0}`}, notify.Retry, 120 * time.Second, "HTTP 429"},
		{"server error", answer{500, "", `oops`}, notify.Retry, ReceiptPollInterval, "HTTP 500"},
		{"Retry-After shorter than Pushover's minimum", answer{503, "1", ``}, notify.Retry, ReceiptPollInterval, "HTTP 503"},
		{"200 without status 1", answer{200, "", `{"status":0,"errors":["something"]}`}, notify.Retry, ReceiptPollInterval, "answer status 0"},
		{"200 not JSON", answer{200, "", `<html>portal</html>`}, notify.Retry, ReceiptPollInterval, "unreadable answer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.setOverride(func(w http.ResponseWriter, r request) bool {
				if tc.answer.code == http.StatusFound {
					w.Header().Set("Location", "https://elsewhere.example/")
				}
				if tc.answer.retryAfter != "" {
					w.Header().Set("Retry-After", tc.answer.retryAfter)
				}
				w.WriteHeader(tc.answer.code)
				_, _ = w.Write([]byte(tc.answer.body))
				return true
			})
			n, _ := newTestNotifier(t, f, Config{}, time.Hour)
			res := n.Notify(context.Background(), spo2Event(alarm.Medium, alarm.PhaseStart))
			if res.Verdict != tc.verdict {
				t.Fatalf("verdict %v (%v), want %v", res.Verdict, res.Err, tc.verdict)
			}
			if res.RetryAfter != tc.wait {
				t.Errorf("RetryAfter %s, want %s", res.RetryAfter, tc.wait)
			}
			if tc.errSubstr == "" {
				if res.Err != nil {
					t.Errorf("error %v on success", res.Err)
				}
				return
			}
			var apiErr *APIError
			if !errors.As(res.Err, &apiErr) || apiErr.StatusCode != tc.answer.code {
				t.Errorf("error %v is not an *APIError with status %d", res.Err, tc.answer.code)
			}
			if !strings.Contains(res.Err.Error(), tc.errSubstr) {
				t.Errorf("error %q lacks %q", res.Err, tc.errSubstr)
			}
			if got := len(f.only("/1/messages.json")); got != 1 {
				t.Errorf("%d sends, want 1 (no redirect followed)", got)
			}
		})
	}
}

// No answer within the timeout is Retry; the context's deadline is kept in
// the error chain.
func TestNotifyTimeoutIsRetry(t *testing.T) {
	f := newFakeAPI(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		<-release
		return true
	})
	n, _ := newTestNotifier(t, f, Config{Timeout: 50 * time.Millisecond}, time.Hour)
	res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart))
	if res.Verdict != notify.Retry || res.RetryAfter != ReceiptPollInterval {
		t.Fatalf("verdict %v after %s (%v), want retry after 5s", res.Verdict, res.RetryAfter, res.Err)
	}
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap the deadline", res.Err)
	}
	if n.receipts.count() != 0 {
		t.Error("receipt stored for a send that failed")
	}
}

// The caller's context bounds the send too.
func TestNotifyHonoursCallerContext(t *testing.T) {
	f := newFakeAPI(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		<-release
		return true
	})
	n, _ := newTestNotifier(t, f, Config{Timeout: time.Hour}, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res := n.Notify(ctx, spo2Event(alarm.Low, alarm.PhaseStart)); res.Verdict != notify.Retry {
		t.Fatalf("verdict %v (%v), want retry", res.Verdict, res.Err)
	}
}

// A server that cannot be reached is Retry.
func TestNotifyUnreachableIsRetry(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	f.srv.Close()
	res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart))
	if res.Verdict != notify.Retry {
		t.Fatalf("verdict %v (%v), want retry", res.Verdict, res.Err)
	}
	assertNoSecret(t, "error", res.Err.Error())
}

// Pushover error text that quotes a credential is redacted.
func TestErrorsRedactEchoedCredentials(t *testing.T) {
	f := newFakeAPI(t)
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 0,
			"errors": []string{"token " + testToken + " is invalid", "user " + testUserKey + " unknown"}})
		return true
	})
	n, _ := newTestNotifier(t, f, Config{}, time.Hour)
	res := n.Notify(context.Background(), spo2Event(alarm.High, alarm.PhaseStart))
	if res.Verdict != notify.GiveUp {
		t.Fatalf("verdict %v, want give up", res.Verdict)
	}
	assertNoSecret(t, "error", res.Err.Error())
	if !strings.Contains(res.Err.Error(), "token [token] is invalid") {
		t.Errorf("error %q lost Pushover's message", res.Err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	dir := t.TempDir()
	goodToken, goodUser := writeSecrets(t, testToken, testUserKey)
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	short := write("short", "abc123secretish\n")
	symbols := write("symbols", "tok0123456789ABCDEFGHIJKLMNO-!\n")
	big := write("big", strings.Repeat("A", 5000))

	cases := []struct {
		name    string
		c       Config
		key     string
		reason  string
		private string // must not appear in the error
	}{
		{"no token file", Config{UserKeyFile: goodUser}, "token_file", "not set", ""},
		{"missing token file", Config{TokenFile: filepath.Join(dir, "nope"), UserKeyFile: goodUser}, "token_file", "no such file", ""},
		{"token file is a directory", Config{TokenFile: dir, UserKeyFile: goodUser}, "token_file", "not a regular file", ""},
		{"token too short", Config{TokenFile: short, UserKeyFile: goodUser}, "token_file", "30 characters [A-Za-z0-9]; found 15", "abc123secretish"},
		{"token with symbols", Config{TokenFile: symbols, UserKeyFile: goodUser}, "token_file", "30 characters", "tok0123456789"},
		{"token file too large", Config{TokenFile: big, UserKeyFile: goodUser}, "token_file", "larger than", "AAAA"},
		{"bad user key", Config{TokenFile: goodToken, UserKeyFile: short}, "user_key_file", "30 characters", "abc123secretish"},
		{"bad device", Config{TokenFile: goodToken, UserKeyFile: goodUser, Device: "phone,has space"}, "device", "has space", ""},
		{"bad sound", Config{TokenFile: goodToken, UserKeyFile: goodUser, Sound: "si ren"}, "sound", "not a Pushover sound", ""},
		{"negative timeout", Config{TokenFile: goodToken, UserKeyFile: goodUser, Timeout: -time.Second}, "timeout", "negative", ""},
		{"retry below 30s", Config{TokenFile: goodToken, UserKeyFile: goodUser, Retry: 29 * time.Second}, "retry", "at least 30s", ""},
		{"expire above 3h", Config{TokenFile: goodToken, UserKeyFile: goodUser, Expire: 10801 * time.Second}, "expire", "at most 3h0m0s", ""},
		{"negative expire", Config{TokenFile: goodToken, UserKeyFile: goodUser, Expire: -time.Second}, "expire", "negative", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Name = "phones"
			_, err := New(tc.c, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want *ConfigError", err)
			}
			if ce.Key != tc.key || ce.Channel != "phones" {
				t.Errorf("error names channel %q key %q, want phones %s", ce.Channel, ce.Key, tc.key)
			}
			if !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q lacks %q or the key", err, tc.reason)
			}
			assertNoSecret(t, "error", err.Error())
			if tc.private != "" && strings.Contains(err.Error(), tc.private) {
				t.Errorf("error %q shows the file content", err)
			}
		})
	}
}

// New reads trimmed keys, applies the defaults, and keeps Pushover's real
// API and its 5 s minimum poll interval.
func TestNewDefaults(t *testing.T) {
	tokenFile, userFile := writeSecrets(t, testToken, testUserKey)
	n, err := New(Config{TokenFile: tokenFile, UserKeyFile: userFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.client.CloseIdleConnections()
	if n.token != testToken || n.userKey != testUserKey {
		t.Error("keys not trimmed")
	}
	if n.Name() != "pushover" || n.timeout != notify.DefaultTimeout || n.retry != 60*time.Second || n.expire != 3600*time.Second {
		t.Errorf("defaults: name %q timeout %s retry %s expire %s", n.Name(), n.timeout, n.retry, n.expire)
	}
	if n.apiURL != "https://api.pushover.net/1" || n.pollInterval != 5*time.Second {
		t.Errorf("production endpoint %q poll %s", n.apiURL, n.pollInterval)
	}
	n2, err := New(Config{Name: "ward", TokenFile: tokenFile, UserKeyFile: userFile, Retry: MinRetry, Expire: MaxExpire}, nil)
	if err != nil {
		t.Fatalf("limits themselves refused: %v", err)
	}
	if n2.Name() != "ward" {
		t.Errorf("name %q", n2.Name())
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		" 7 ":                           7 * time.Second,
		"-3":                            0,
		"soon":                          0,
		"999999999":                     24 * time.Hour,
		"Tue, 04 Mar 2025 10:01:00 GMT": time.Minute,
		"Tue, 04 Mar 2025 09:00:00 GMT": 0,
	}
	for in, want := range cases {
		if got := notify.RetryAfter(in, now, maxRetryAfter); got != want {
			t.Errorf("RetryAfter(%q, now, %s) = %s, want %s", in, maxRetryAfter, got, want)
		}
	}
}
