package dispatch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/notify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness runs a dispatcher on a fake clock until the test ends.
type harness struct {
	d     *Dispatcher
	clock *fakeClock
	fakes map[string]*fakeNotifier

	mu      sync.Mutex
	results []string // "channel verdict"
	failing []bool
}

func start(t *testing.T, routes []config.Route, fakes ...*fakeNotifier) *harness {
	t.Helper()
	h := newHarness(t, routes, fakes...)
	h.run(t)
	return h
}

func newHarness(t *testing.T, routes []config.Route, fakes ...*fakeNotifier) *harness {
	t.Helper()
	h := &harness{fakes: map[string]*fakeNotifier{}}
	notifiers := map[string]notify.Notifier{}
	for _, f := range fakes {
		if h.clock == nil {
			h.clock = f.clock
		}
		h.fakes[f.name] = f
		notifiers[f.name] = f
	}
	d, err := New(Options{
		Routes:    routes,
		Notifiers: notifiers,
		Now:       h.clock.Now,
		After:     h.clock.After,
		OnResult: func(ch string, _ alarm.Event, r notify.Result, _ time.Duration) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.results = append(h.results, ch+" "+r.Verdict.String())
		},
		OnAllChannelsFailing: func(f bool) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.failing = append(h.failing, f)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	return h
}

func (h *harness) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func (h *harness) Results() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.results...)
}

func (h *harness) Failing() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.failing...)
}

func event(id string, p alarm.Priority, phase alarm.Phase) alarm.Event {
	state := alarm.Active
	if phase == alarm.PhaseEnd {
		state = alarm.Resolved
	}
	return alarm.Event{
		AlarmID: id, EventID: id + "#1", Phase: phase, Kind: alarm.Physiological,
		Priority: p, State: state, Metric: "spo2", Text: p.Marker() + " SpO2 low",
		Room: "room-1",
	}
}

func phases(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.ev.AlarmID+" "+string(c.ev.Phase))
	}
	return out
}

func equal(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") }

func TestRoutesByPriority(t *testing.T) {
	clock := newFakeClock()
	phone, pager, hook, backup := newFake("phone", clock), newFake("pager", clock), newFake("hook", clock), newFake("backup", clock)
	routes := []config.Route{
		{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"phone", "pager"}},
		{Priorities: []alarm.Priority{alarm.Medium, alarm.High}, Channels: []string{"hook"}}, // high already matched above
		{Name: "backup", Channels: []string{"backup"}},                                       // reachable only via then
	}
	h := start(t, routes, phone, pager, hook, backup)

	h.d.Dispatch(event("hi", alarm.High, alarm.PhaseStart))
	h.d.Dispatch(event("med", alarm.Medium, alarm.PhaseStart))
	h.d.Dispatch(event("low", alarm.Low, alarm.PhaseStart)) // no route covers low

	phone.waitCalls(t, 1)
	pager.waitCalls(t, 1)
	hook.waitCalls(t, 1)
	settle()
	if got := phases(phone.Calls()); !equal(got, []string{"hi start"}) {
		t.Errorf("phone got %v", got)
	}
	if got := phases(pager.Calls()); !equal(got, []string{"hi start"}) {
		t.Errorf("pager got %v", got)
	}
	if got := phases(hook.Calls()); !equal(got, []string{"med start"}) {
		t.Errorf("hook got %v (high must take the first matching route only)", got)
	}
	if got := backup.Calls(); len(got) != 0 {
		t.Errorf("backup (no priorities) got %v", phases(got))
	}
}

func TestRuleRouteOverridesPriority(t *testing.T) {
	clock := newFakeClock()
	phone, backup := newFake("phone", clock), newFake("backup", clock)
	d, err := New(Options{
		Routes: []config.Route{
			{Priorities: []alarm.Priority{alarm.Medium}, Channels: []string{"phone"}},
			{Name: "backup", Channels: []string{"backup"}},
		},
		Notifiers: map[string]notify.Notifier{"phone": phone, "backup": backup},
		Now:       clock.Now, After: clock.After,
		RouteOf: func(id string) string {
			if id == "special" {
				return "backup"
			}
			return ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{d: d, clock: clock}
	h.run(t)
	d.Dispatch(event("special", alarm.Medium, alarm.PhaseStart))
	d.Dispatch(event("plain", alarm.Medium, alarm.PhaseStart))
	backup.waitCalls(t, 1)
	phone.waitCalls(t, 1)
	settle()
	if got := phases(backup.Calls()); !equal(got, []string{"special start"}) {
		t.Errorf("backup got %v", got)
	}
	if got := phases(phone.Calls()); !equal(got, []string{"plain start"}) {
		t.Errorf("phone got %v", got)
	}
}

func tiers() []config.Route {
	return []config.Route{
		{Priorities: []alarm.Priority{alarm.High, alarm.Medium, alarm.Low}, Channels: []string{"phone1"}, EscalateAfter: time.Minute, Then: "tier2"},
		{Name: "tier2", Channels: []string{"phone2"}, EscalateAfter: 2 * time.Minute, Then: "tier3"},
		{Name: "tier3", Channels: []string{"phone3"}},
	}
}

func TestEscalatesDownTiersWithoutAck(t *testing.T) {
	clock := newFakeClock()
	p1, p2, p3 := newFake("phone1", clock), newFake("phone2", clock), newFake("phone3", clock)
	h := start(t, tiers(), p1, p2, p3)
	t0 := clock.Now()

	h.d.Dispatch(event("a", alarm.High, alarm.PhaseStart))
	p1.waitCalls(t, 1)
	clock.waitForTimer(t, time.Minute)
	clock.Advance(59 * time.Second)
	settle()
	if n := len(p2.Calls()); n != 0 {
		t.Fatalf("tier 2 got %d messages before escalate_after", n)
	}
	clock.Advance(time.Second)
	got := p2.waitCalls(t, 1)
	if ev := got[0].ev; ev.Phase != alarm.PhaseUpdate || ev.Text != "Escalated: *** SpO2 low" {
		t.Errorf("tier 2 got phase %s text %q", ev.Phase, ev.Text)
	}
	if at := got[0].at.Sub(t0); at != time.Minute {
		t.Errorf("tier 2 notified at +%s, want +1m", at)
	}

	// Tier 2's own escalate_after leads to tier 3.
	clock.waitForTimer(t, 2*time.Minute)
	clock.Advance(2 * time.Minute)
	got = p3.waitCalls(t, 1)
	if at := got[0].at.Sub(t0); at != 3*time.Minute {
		t.Errorf("tier 3 notified at +%s, want +3m", at)
	}
	if len(p1.Calls()) != 1 {
		t.Errorf("tier 1 got %v; escalation goes to the next tier only", phases(p1.Calls()))
	}

	// The end clears every channel that was told.
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseEnd))
	for _, f := range []*fakeNotifier{p1, p2, p3} {
		calls := f.waitCalls(t, 2)
		if last := calls[len(calls)-1].ev; last.Phase != alarm.PhaseEnd {
			t.Errorf("%s last got %s, want end", f.name, last.Phase)
		}
	}
	// And escalation stops with the end.
	clock.Advance(time.Hour)
	settle()
	if n := len(p3.Calls()); n != 2 {
		t.Errorf("tier 3 got %d messages after the end", n)
	}
}

func TestLowPriorityDoesNotEscalate(t *testing.T) {
	clock := newFakeClock()
	p1, p2, p3 := newFake("phone1", clock), newFake("phone2", clock), newFake("phone3", clock)
	h := start(t, tiers(), p1, p2, p3)
	h.d.Dispatch(event("a", alarm.Low, alarm.PhaseStart))
	p1.waitCalls(t, 1)
	clock.Advance(time.Hour)
	settle()
	if n := len(p2.Calls()); n != 0 {
		t.Errorf("a low alarm escalated: tier 2 got %d", n)
	}
}

// The scenario: acknowledging through the phone link stops
// escalation; no acknowledgement reaches tier 2 after escalate_after.
func TestAcknowledgementStopsEscalation(t *testing.T) {
	for _, how := range []string{"phone link", "engine event"} {
		t.Run(how, func(t *testing.T) {
			clock := newFakeClock()
			p1, p2, p3 := newFake("phone1", clock), newFake("phone2", clock), newFake("phone3", clock)
			h := start(t, tiers(), p1, p2, p3)

			// Acknowledged: nothing reaches tier 2 after escalate_after.
			h.d.Dispatch(event("acked", alarm.High, alarm.PhaseStart))
			p1.waitCalls(t, 1)
			clock.waitForTimer(t, time.Minute)
			clock.Advance(30 * time.Second)
			ack := event("acked", alarm.High, alarm.PhaseUpdate)
			ack.State = alarm.Acknowledged
			if how == "phone link" {
				h.d.Acknowledged("acked")
			}
			h.d.Dispatch(ack)
			p1.waitCalls(t, 2)
			clock.Advance(5 * time.Minute)
			settle()
			if got := p2.Calls(); len(got) != 0 {
				t.Errorf("tier 2 got %v after acknowledgement", phases(got))
			}

			// Not acknowledged: it reaches tier 2.
			h.d.Dispatch(event("open", alarm.High, alarm.PhaseStart))
			p1.waitCalls(t, 3)
			clock.waitForTimer(t, time.Minute)
			clock.Advance(time.Minute)
			got := p2.waitCalls(t, 1)
			if got[0].ev.AlarmID != "open" {
				t.Errorf("tier 2 got %s", got[0].ev.AlarmID)
			}
		})
	}
}

func TestRepeatsUntilAcknowledged(t *testing.T) {
	clock := newFakeClock()
	phone := newFake("phone", clock)
	routes := []config.Route{{Priorities: []alarm.Priority{alarm.Medium}, Channels: []string{"phone"}, RepeatInterval: 30 * time.Second}}
	h := start(t, routes, phone)
	h.d.Dispatch(event("a", alarm.Medium, alarm.PhaseStart))
	phone.waitCalls(t, 1)
	for i := 2; i <= 3; i++ {
		clock.waitForTimer(t, 30*time.Second)
		clock.Advance(30 * time.Second)
		got := phone.waitCalls(t, i)
		if ev := got[i-1].ev; ev.Phase != alarm.PhaseUpdate || ev.Text != "Repeated: ** SpO2 low" {
			t.Errorf("repeat %d: phase %s text %q", i-1, ev.Phase, ev.Text)
		}
	}
	h.d.Acknowledged("a")
	clock.Advance(10 * time.Minute)
	settle()
	if n := len(phone.Calls()); n != 3 {
		t.Errorf("%d messages after acknowledgement, want 3", n)
	}
}

func TestRetriesWithBackoffThenDelivers(t *testing.T) {
	clock := newFakeClock()
	retry := notify.Result{Verdict: notify.Retry, Err: errors.New("503")}
	phone := newFake("phone", clock, retry, retry,
		notify.Result{Verdict: notify.Retry, RetryAfter: 7 * time.Second, Err: errors.New("429")})
	h := start(t, []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"phone"}}}, phone)
	t0 := clock.Now()
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseStart))

	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 7 * time.Second} {
		phone.waitCalls(t, i+1)
		clock.waitForTimer(t, wait)
		clock.Advance(wait)
	}
	calls := phone.waitCalls(t, 4)
	var offsets []time.Duration
	for _, c := range calls {
		offsets = append(offsets, c.at.Sub(t0))
	}
	want := []time.Duration{0, time.Second, 3 * time.Second, 10 * time.Second}
	for i := range want {
		if offsets[i] != want[i] {
			t.Fatalf("attempts at %v, want %v", offsets, want)
		}
	}
	waitFor(t, "4 results", func() bool { return len(h.Results()) == 4 })
	if got := h.Results(); !equal(got, []string{"phone retry", "phone retry", "phone retry", "phone delivered"}) {
		t.Errorf("results %v", got)
	}
	settle()
	if n := len(phone.Calls()); n != 4 {
		t.Errorf("%d attempts after delivery", n)
	}
}

func TestBackoffDoublesToCap(t *testing.T) {
	clock := newFakeClock()
	phone := newFake("phone", clock)
	phone.setFallback(notify.Result{Verdict: notify.Retry})
	h := start(t, []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"phone"}}}, phone)
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseStart))
	for _, wait := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		clock.waitForTimer(t, wait*time.Second)
		clock.Advance(wait * time.Second)
	}
	phone.waitCalls(t, 9)
}

func TestGivesUpWithoutRetry(t *testing.T) {
	clock := newFakeClock()
	phone := newFake("phone", clock, notify.Result{Verdict: notify.GiveUp, Err: errors.New("401")})
	h := start(t, []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"phone"}}}, phone)
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseStart))
	h.d.Dispatch(event("b", alarm.High, alarm.PhaseStart))
	phone.waitCalls(t, 2)
	clock.Advance(time.Hour)
	settle()
	if got := phases(phone.Calls()); !equal(got, []string{"a start", "b start"}) {
		t.Errorf("calls %v (a given up, not retried; b next)", got)
	}
	if got := h.Results(); !equal(got, []string{"phone give_up", "phone delivered"}) {
		t.Errorf("results %v", got)
	}
}

func TestRetryStopsWhenAlarmEnds(t *testing.T) {
	clock := newFakeClock()
	phone := newFake("phone", clock, notify.Result{Verdict: notify.Retry})
	h := start(t, []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"phone"}}}, phone)
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseStart))
	phone.waitCalls(t, 1)
	clock.waitForTimer(t, time.Second)
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseEnd))
	phone.waitCalls(t, 2)
	settle()
	if got := phases(phone.Calls()); !equal(got, []string{"a start", "a end"}) {
		t.Errorf("calls %v", got)
	}
}

func TestRetryGivesUpAfterMaxDuration(t *testing.T) {
	clock := newFakeClock()
	phone := newFake("phone", clock)
	phone.setFallback(notify.Result{Verdict: notify.Retry})
	h := start(t, []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"phone"}}}, phone)
	t0 := clock.Now()
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseStart))
	for clock.Now().Sub(t0) < MaxRetryDuration-MaxBackoff {
		clock.fireNext(t)
	}
	settle()
	n := len(phone.Calls())
	clock.Advance(time.Hour)
	settle()
	if got := len(phone.Calls()); got != n {
		t.Fatalf("attempts went on past %s: %d then %d", MaxRetryDuration, n, got)
	}
	if last := phone.Calls()[n-1].at.Sub(t0); last > MaxRetryDuration {
		t.Errorf("last attempt at +%s", last)
	}
}

func TestEndGoesToEveryChannelThatGotTheStart(t *testing.T) {
	clock := newFakeClock()
	a, b, c := newFake("a", clock), newFake("b", clock), newFake("c", clock)
	routes := []config.Route{
		{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"a", "b"}},
		{Priorities: []alarm.Priority{alarm.Medium}, Channels: []string{"c"}},
	}
	h := start(t, routes, a, b, c)
	h.d.Dispatch(event("x", alarm.High, alarm.PhaseStart))
	// The end carries another priority: it still goes where the start went.
	end := event("x", alarm.Medium, alarm.PhaseEnd)
	h.d.Dispatch(end)
	for _, f := range []*fakeNotifier{a, b} {
		if got := phases(f.waitCalls(t, 2)); !equal(got, []string{"x start", "x end"}) {
			t.Errorf("%s got %v", f.name, got)
		}
	}
	settle()
	if got := c.Calls(); len(got) != 0 {
		t.Errorf("c got %v", phases(got))
	}
}

func TestAllChannelsFailingRaisedAndCleared(t *testing.T) {
	clock := newFakeClock()
	a, b := newFake("a", clock), newFake("b", clock)
	a.setFallback(notify.Result{Verdict: notify.Retry})
	b.setFallback(notify.Result{Verdict: notify.Retry})
	var mu sync.Mutex
	var raisedAt []time.Time
	d, err := New(Options{
		Routes:    []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"a", "b"}}},
		Notifiers: map[string]notify.Notifier{"a": a, "b": b},
		Now:       clock.Now, After: clock.After,
		OnAllChannelsFailing: func(f bool) {
			mu.Lock()
			defer mu.Unlock()
			if f {
				raisedAt = append(raisedAt, clock.Now())
			} else {
				raisedAt = append(raisedAt, time.Time{})
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{d: d, clock: clock}
	h.run(t)
	calls := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), raisedAt...)
	}
	t0 := clock.Now()
	d.Dispatch(event("x", alarm.High, alarm.PhaseStart))
	a.waitCalls(t, 1)
	b.waitCalls(t, 1)
	for len(calls()) == 0 {
		if clock.Now().Sub(t0) > 5*time.Minute {
			t.Fatal("not raised after 5 min of failures")
		}
		clock.fireNext(t)
		settle()
	}
	got := calls()
	if len(got) != 1 || got[0].Sub(t0) < FailingWindow {
		t.Fatalf("raised at %v, want once, at least %s after the first failure at %v", got, FailingWindow, t0)
	}
	b.setFallback(notify.Result{Verdict: notify.Delivered})
	waitFor(t, "cleared", func() bool {
		if len(calls()) >= 2 {
			return true
		}
		clock.fireNext(t)
		return false
	})
	if got := calls(); len(got) != 2 || !got[1].IsZero() {
		t.Errorf("callbacks %v, want raise then clear", got)
	}
}

func TestFullQueueDropsOldestUpdateOnly(t *testing.T) {
	clock := newFakeClock()
	phone := newFake("phone", clock)
	h := newHarness(t, []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"phone"}}}, phone)
	// Queued before Run, so nothing is sent while filling.
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseStart))
	const updates = QueueSize + 5
	for i := 0; i < updates; i++ {
		ev := event("a", alarm.High, alarm.PhaseUpdate)
		ev.Text = strings.Repeat("u", i+1)
		h.d.Dispatch(ev)
	}
	h.d.Dispatch(event("a", alarm.High, alarm.PhaseEnd))
	wantDropped := uint64(1 + updates + 1 - QueueSize)
	if got := h.d.Dropped(); got != wantDropped {
		t.Errorf("Dropped %d, want %d", got, wantDropped)
	}
	h.run(t)
	calls := phone.waitCalls(t, QueueSize)
	if calls[0].ev.Phase != alarm.PhaseStart || calls[len(calls)-1].ev.Phase != alarm.PhaseEnd {
		t.Errorf("first %s last %s, want start and end kept", calls[0].ev.Phase, calls[len(calls)-1].ev.Phase)
	}
	// The oldest updates went: the first update kept is number dropped+1.
	if got, want := len(calls[1].ev.Text), int(wantDropped)+1; got != want {
		t.Errorf("first update kept is #%d, want #%d", got, want)
	}
}

func TestNewRefusesBadRoutes(t *testing.T) {
	clock := newFakeClock()
	n := map[string]notify.Notifier{"a": newFake("a", clock)}
	cases := map[string][]config.Route{
		"unknown channel": {{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"zz"}}},
		"unknown then":    {{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"a"}, EscalateAfter: time.Minute, Then: "nope"}},
		"loop": {
			{Name: "x", Priorities: []alarm.Priority{alarm.High}, Channels: []string{"a"}, EscalateAfter: time.Minute, Then: "y"},
			{Name: "y", Channels: []string{"a"}, EscalateAfter: time.Minute, Then: "x"},
		},
		"then without escalate_after": {
			{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"a"}, Then: "y"},
			{Name: "y", Channels: []string{"a"}},
		},
	}
	for name, routes := range cases {
		_, err := New(Options{Routes: routes, Notifiers: n})
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err %v, want *ConfigError", name, err)
		}
	}
}

func TestRunTwice(t *testing.T) {
	clock := newFakeClock()
	h := start(t, []config.Route{{Priorities: []alarm.Priority{alarm.High}, Channels: []string{"a"}}}, newFake("a", clock))
	waitFor(t, "running", h.d.running.Load)
	if err := h.d.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v", err)
	}
}
