package acklink

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/drivers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKey is 40 bytes; never a real key.
var testKey = []byte("acklink-test-key-0123456789-abcdefghijkl")

// t0 is the tests' wall clock start.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// fakeClock is a settable clock shared by the links and the alarm engine.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// ackCall is one call of Options.Acknowledge.
type ackCall struct{ AlarmID, By, How string }

// room is a treatment room with the real alarm engine (default rules) and
// one oximeter, driven second by second on the fake clock, as the agent
// drives it. Links acknowledge through the engine.
type room struct {
	t      *testing.T
	clock  *fakeClock
	engine *alarm.Engine
	links  *Links
	logs   *syncBuffer

	mu      sync.Mutex
	acks    []ackCall
	failAck error // when set, Acknowledge returns it without acknowledging
}

const oximeter = "oximeter-1"

func newRoom(t *testing.T, baseURL string) *room {
	t.Helper()
	r := &room{t: t, clock: &fakeClock{now: t0}, logs: &syncBuffer{}}
	e, err := alarm.NewEngine(alarm.DefaultRules(), alarm.Options{Site: "clinic", Room: "Room 1", Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.engine = e
	r.links, err = New(Options{
		Key:         testKey,
		BaseURL:     baseURL,
		Now:         r.clock.Now,
		Acknowledge: r.acknowledge,
		Current:     r.current,
		Logger:      slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.checkLogs() })
	return r
}

func (r *room) acknowledge(alarmID, eventID, by, how string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failAck != nil {
		return r.failAck
	}
	r.acks = append(r.acks, ackCall{alarmID, by, how})
	_, err := r.engine.AcknowledgeEvent(alarmID, eventID, by, how, r.clock.Now())
	return err
}

func (r *room) current(alarmID string) (alarm.Event, bool) {
	for _, ev := range r.engine.Active() {
		if ev.AlarmID == alarmID {
			return ev, true
		}
	}
	return alarm.Event{}, false
}

func (r *room) ackCalls() []ackCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ackCall(nil), r.acks...)
}

func (r *room) setFailAck(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failAck = err
}

// spo2 feeds one SpO2 reading a second for n seconds, each with a Tick.
func (r *room) spo2(value float64, n int) {
	for range n {
		now := r.clock.Advance(time.Second)
		r.engine.Observe(oximeter, "spo2", value, true, drivers.Flags(0), now)
		r.engine.Tick(now)
	}
}

// raise desaturates to value until the alarm with id (a spo2 rule on the
// oximeter) is in force, and returns its event.
func (r *room) raise(value float64, rule string) alarm.Event {
	r.t.Helper()
	r.spo2(97, 5)
	r.spo2(value, 20) // past the 15 s condition delay (clinical.md 4)
	ev, ok := r.current(rule + "/" + oximeter)
	if !ok {
		r.t.Fatalf("alarm %s/%s not raised; active: %+v", rule, oximeter, r.engine.Active())
	}
	return ev
}

// recover brings SpO2 back to normal long enough for non-latching alarms to
// end (2 % margin, 10 s clear delay: agent/alarm README).
func (r *room) recover() { r.spo2(97, 20) }

func (r *room) state(alarmID string) alarm.State {
	ev, ok := r.current(alarmID)
	if !ok {
		return alarm.Inactive
	}
	return ev.State
}

// checkLogs enforces the logging rule: no token (or any long base64url
// run a token would be) and no key in the logs.
func (r *room) checkLogs() {
	logs := r.logs.String()
	if bytes.Contains([]byte(logs), testKey) {
		r.t.Errorf("the key appears in the logs:\n%s", logs)
	}
	if m := tokenLike.FindString(logs); m != "" {
		r.t.Errorf("a token-like string %q appears in the logs:\n%s", m, logs)
	}
}

// syncBuffer is a bytes.Buffer safe for the handler's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireEnv stops a test whose environment (Chromium) is missing: a
// failure when CI is set, a skip elsewhere (project rule).
func requireEnv(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: %v (required when CI is set)", what, err)
	}
	t.Skipf("%s: %v (set CI to make this a failure)", what, err)
}

// tokenLike matches a run of base64url as long as the shortest token.
var tokenLike = regexp.MustCompile(`[A-Za-z0-9_-]{80,}`)

var errAckStore = errors.New("audit store unavailable")
