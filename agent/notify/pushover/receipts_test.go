package pushover

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// testPoll stands in for Pushover's 5 s minimum so the tests run quickly;
// New always uses ReceiptPollInterval (TestNewDefaults).
const testPoll = 40 * time.Millisecond

func (f *fakeAPI) setReceiptAnswer(fn func(receipt string, poll int) map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receiptAnswer = fn
}

func notAcknowledged() map[string]any {
	return map[string]any{"status": 1, "request": "req-poll", "acknowledged": 0, "acknowledged_at": 0,
		"acknowledged_by": "", "acknowledged_by_device": "", "last_delivered_at": 1741083320,
		"expired": 0, "expires_at": 1741086920, "called_back": 0, "called_back_at": 0}
}

// polling runs RunAcknowledgements of n until the test ends and returns the
// acknowledgements it reports.
func polling(t *testing.T, n *Notifier) <-chan notify.Acknowledgement {
	t.Helper()
	acks := make(chan notify.Acknowledgement, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.RunAcknowledgements(ctx, func(a notify.Acknowledgement) { acks <- a }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunAcknowledgements returned %v, want nil when its context ends", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("RunAcknowledgements did not stop with its context")
		}
	})
	return acks
}

// waitFor waits, with a generous deadline, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func receiptPath(n int) string { return "/1/receipts/" + receiptID(n) + ".json" }

func sendHigh(t *testing.T, n *Notifier, alarmID, eventID string) {
	t.Helper()
	ev := spo2Event(alarm.High, alarm.PhaseStart)
	ev.AlarmID, ev.EventID = alarmID, eventID
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("send: %v (%v)", res.Verdict, res.Err)
	}
}

// An acknowledged receipt is reported once with the alarm, event, device
// name and time, and is no longer polled; other receipts keep being polled,
// each no faster than the poll interval.
func TestAcknowledgementReportedAndPollingStops(t *testing.T) {
	f := newFakeAPI(t)
	ackedAt := time.Date(2025, 3, 4, 10, 16, 0, 0, time.UTC)
	f.setReceiptAnswer(func(receipt string, poll int) map[string]any {
		ans := notAcknowledged()
		if receipt == receiptID(1) && poll >= 3 {
			ans["acknowledged"] = 1
			ans["acknowledged_at"] = ackedAt.Unix()
			ans["acknowledged_by"] = testUserKey
			ans["acknowledged_by_device"] = "nurse-phone-2"
		}
		return ans
	})
	n, _ := newTestNotifier(t, f, Config{Name: "ward-phones"}, testPoll)
	sendHigh(t, n, "spo2-low-high/oximeter-1", "ev-a")
	sendHigh(t, n, "pulse-high-high/oximeter-1", "ev-b")
	acks := polling(t, n)

	var got notify.Acknowledgement
	select {
	case got = <-acks:
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement reported")
	}
	want := notify.Acknowledgement{AlarmID: "spo2-low-high/oximeter-1", EventID: "ev-a",
		By: "nurse-phone-2", Channel: "ward-phones", At: ackedAt}
	if !got.At.Equal(want.At) {
		t.Errorf("At %s, want %s", got.At, want.At)
	}
	got.At = want.At
	if got != want {
		t.Errorf("acknowledgement %+v, want %+v", got, want)
	}

	// Three more rounds (seen on the other receipt), and the acknowledged
	// one was not asked again.
	base := f.pollCount(receiptID(2))
	waitFor(t, "three more poll rounds", func() bool { return f.pollCount(receiptID(2)) >= base+3 })
	if c := f.pollCount(receiptID(1)); c != 3 {
		t.Errorf("acknowledged receipt polled %d times, want 3", c)
	}
	select {
	case a := <-acks:
		t.Errorf("second acknowledgement %+v", a)
	default:
	}
	if n.receipts.count() != 1 {
		t.Errorf("%d open receipts, want only the unacknowledged one", n.receipts.count())
	}

	for _, path := range []string{receiptPath(1), receiptPath(2)} {
		polls := f.only(path)
		for i, r := range polls {
			if r.method != http.MethodGet {
				t.Errorf("poll %s uses %s", path, r.method)
			}
			if !reflect.DeepEqual(r.query, url.Values{"token": {testToken}}) {
				t.Errorf("poll query %v, want only the token", r.query)
			}
			if i > 0 {
				if gap := r.at.Sub(polls[i-1].at); gap < testPoll {
					t.Errorf("%s polled %s after the previous poll, faster than %s", path, gap, testPoll)
				}
			}
		}
	}
	if got := len(f.all()) - len(f.only("/1/messages.json")) - len(f.only(receiptPath(1))) - len(f.only(receiptPath(2))); got != 0 {
		t.Errorf("%d unexpected calls (cancel after a single acknowledged receipt?)", got)
	}
}

// Without a device name, the acknowledger is named by a fingerprint of the
// user key, never the key itself (it is a credential, here the channel's own).
func TestAcknowledgerWithoutDeviceIsFingerprinted(t *testing.T) {
	f := newFakeAPI(t)
	f.setReceiptAnswer(func(string, int) map[string]any {
		ans := notAcknowledged()
		ans["acknowledged"] = 1
		ans["acknowledged_at"] = 1741083400
		ans["acknowledged_by"] = testUserKey
		return ans
	})
	n, _ := newTestNotifier(t, f, Config{}, testPoll)
	sendHigh(t, n, "spo2-low-high/oximeter-1", "ev-a")
	select {
	case a := <-polling(t, n):
		if !strings.HasPrefix(a.By, "pushover user ") || len(a.By) != len("pushover user ")+12 {
			t.Errorf("By %q, want a user fingerprint", a.By)
		}
		assertNoSecret(t, "acknowledgement", a.By)
		if !a.At.Equal(time.Unix(1741083400, 0)) {
			t.Errorf("At %s", a.At)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement reported")
	}
}

// When an alarm sent several emergencies (repeats), acknowledging one
// cancels the others, which are then not polled.
func TestAcknowledgementCancelsTheAlarmsOtherEmergencies(t *testing.T) {
	f := newFakeAPI(t)
	f.setReceiptAnswer(func(receipt string, _ int) map[string]any {
		ans := notAcknowledged()
		if receipt == receiptID(1) {
			ans["acknowledged"] = 1
			ans["acknowledged_by_device"] = "charge-nurse"
		}
		return ans
	})
	n, _ := newTestNotifier(t, f, Config{}, testPoll)
	sendHigh(t, n, "spo2-low-high/oximeter-1", "ev-a")
	sendHigh(t, n, "spo2-low-high/oximeter-1", "ev-a")   // a repeat: second receipt
	sendHigh(t, n, "pulse-high-high/oximeter-1", "ev-b") // another alarm, keeps the rounds going
	select {
	case a := <-polling(t, n):
		if a.EventID != "ev-a" || a.By != "charge-nurse" {
			t.Errorf("acknowledgement %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement reported")
	}
	waitFor(t, "two more poll rounds", func() bool { return f.pollCount(receiptID(3)) >= 3 })
	if c := len(f.only("/1/receipts/" + receiptID(2) + "/cancel.json")); c != 1 {
		t.Errorf("repeat cancelled %d times, want 1", c)
	}
	if c := f.pollCount(receiptID(2)); c != 0 {
		t.Errorf("cancelled repeat polled %d times", c)
	}
	if c := len(f.only("/1/receipts/" + receiptID(3) + "/cancel.json")); c != 0 {
		t.Error("another alarm's emergency was cancelled")
	}
	if n.receipts.count() != 1 {
		t.Errorf("%d receipts open, want only the other alarm's", n.receipts.count())
	}
}

// An expired receipt is logged and no longer polled, and reports no
// acknowledgement; a receipt Pushover refuses (404) is dropped the same way.
func TestExpiredAndRefusedReceiptsStopPolling(t *testing.T) {
	f := newFakeAPI(t)
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		if r.path == receiptPath(2) {
			writeJSON(w, http.StatusNotFound, map[string]any{"status": 0, "errors": []string{"receipt not found; may be invalid or expired"}})
			return true
		}
		return false
	})
	f.setReceiptAnswer(func(receipt string, _ int) map[string]any {
		ans := notAcknowledged()
		if receipt == receiptID(1) {
			ans["expired"] = 1
		}
		return ans
	})
	n, logs := newTestNotifier(t, f, Config{}, testPoll)
	sendHigh(t, n, "spo2-low-high/oximeter-1", "ev-a")
	sendHigh(t, n, "pulse-low-high/oximeter-1", "ev-b")
	sendHigh(t, n, "bp-high-high/nibp-1", "ev-c") // keeps the rounds going
	acks := polling(t, n)
	waitFor(t, "four poll rounds", func() bool { return f.pollCount(receiptID(3)) >= 4 })
	if c := f.pollCount(receiptID(1)); c != 1 {
		t.Errorf("expired receipt polled %d times, want 1", c)
	}
	if c := len(f.only(receiptPath(2))); c != 1 {
		t.Errorf("refused receipt polled %d times, want 1", c)
	}
	if !strings.Contains(logs.String(), "expired without acknowledgement") {
		t.Error("expiry not logged")
	}
	if !strings.Contains(logs.String(), "receipt not found") {
		t.Error("refused poll not logged with Pushover's reason")
	}
	select {
	case a := <-acks:
		t.Errorf("acknowledgement %+v for an expired or refused receipt", a)
	default:
	}
}

// A poll without an answer keeps the receipt, and its error (whose request
// URL carries the token) reaches the log without the token.
func TestFailedPollKeepsReceiptAndHidesToken(t *testing.T) {
	f := newFakeAPI(t)
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		if r.method == http.MethodGet && len(f.only(r.path)) <= 2 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // no answer at all
			}
			return true
		}
		return false
	})
	f.setReceiptAnswer(func(string, int) map[string]any {
		ans := notAcknowledged()
		ans["acknowledged"] = 1
		ans["acknowledged_by_device"] = "nurse-phone-2"
		return ans
	})
	n, logs := newTestNotifier(t, f, Config{}, testPoll)
	n.minRetryWait = testPoll
	sendHigh(t, n, "spo2-low-high/oximeter-1", "ev-a")
	select {
	case a := <-polling(t, n):
		if a.By != "nurse-phone-2" {
			t.Errorf("acknowledgement %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement after the failed polls")
	}
	if !strings.Contains(logs.String(), "receipt poll failed") {
		t.Errorf("failed poll not logged: %s", logs.String())
	}
	// newTestNotifier's cleanup checks the log holds no credential.
}

// A Retry-After on a poll delays the next round by that much.
func TestPollHonoursRetryAfter(t *testing.T) {
	f := newFakeAPI(t)
	f.setOverride(func(w http.ResponseWriter, r request) bool {
		if r.method == http.MethodGet && len(f.only(r.path)) == 1 {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"status": 0})
			return true
		}
		return false
	})
	n, _ := newTestNotifier(t, f, Config{}, testPoll)
	n.minRetryWait = testPoll
	sendHigh(t, n, "spo2-low-high/oximeter-1", "ev-a")
	polling(t, n)
	waitFor(t, "the second poll", func() bool { return len(f.only(receiptPath(1))) >= 2 })
	polls := f.only(receiptPath(1))
	if gap := polls[1].at.Sub(polls[0].at); gap < time.Second {
		t.Errorf("second poll %s after a Retry-After of 1s", gap)
	}
}

func TestRunAcknowledgementsRunsOnce(t *testing.T) {
	f := newFakeAPI(t)
	n, _ := newTestNotifier(t, f, Config{}, testPoll)
	if err := n.RunAcknowledgements(context.Background(), nil); err == nil {
		t.Error("nil ack accepted")
	}
	polling(t, n)
	waitFor(t, "polling to start", n.polling.Load)
	if err := n.RunAcknowledgements(context.Background(), func(notify.Acknowledgement) {}); !errors.Is(err, ErrAlreadyPolling) {
		t.Errorf("second RunAcknowledgements: %v, want ErrAlreadyPolling", err)
	}
}

// The store never holds more than its bound; the oldest receipt goes first.
func TestReceiptStoreIsBounded(t *testing.T) {
	s := newReceiptStore(3)
	for i := 1; i <= 3; i++ {
		if _, evicted := s.add(openReceipt{receipt: receiptID(i), key: eventKey{"a", "e"}}); evicted {
			t.Fatalf("eviction below the bound at %d", i)
		}
	}
	old, evicted := s.add(openReceipt{receipt: receiptID(4), key: eventKey{"b", "e"}})
	if !evicted || old.receipt != receiptID(1) {
		t.Fatalf("evicted %v %q, want the oldest", evicted, old.receipt)
	}
	if s.count() != 3 || s.has(receiptID(1)) {
		t.Errorf("store holds %d, oldest present %v", s.count(), s.has(receiptID(1)))
	}
	taken := s.takeEvent(eventKey{"a", "e"})
	if len(taken) != 2 || taken[0].receipt != receiptID(2) || taken[1].receipt != receiptID(3) {
		t.Errorf("takeEvent %+v, want receipts 2 and 3 in order", taken)
	}
	if !s.remove(receiptID(4)) || s.remove(receiptID(4)) || s.count() != 0 {
		t.Error("remove")
	}
}
