package dispatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// fakeClock is the dispatcher's clock and timer source: time moves only
// when a test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
}

type waiter struct {
	at time.Time
	d  time.Duration
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, &waiter{at: c.now.Add(d), d: d, ch: ch})
	return ch
}

// Advance moves time by d and fires every timer due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
			continue
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

// waitForTimer waits until a timer of duration d is pending.
func (c *fakeClock) waitForTimer(t *testing.T, d time.Duration) {
	t.Helper()
	waitFor(t, "a pending timer of "+d.String(), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, w := range c.waiters {
			if w.d == d {
				return true
			}
		}
		return false
	})
}

// fireNext waits for any pending timer and advances to the earliest.
func (c *fakeClock) fireNext(t *testing.T) {
	t.Helper()
	var at time.Time
	waitFor(t, "any pending timer", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, w := range c.waiters {
			if i == 0 || w.at.Before(at) {
				at = w.at
			}
		}
		return len(c.waiters) > 0
	})
	c.Advance(at.Sub(c.Now()))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle gives goroutines a moment before asserting that nothing happened.
func settle() { time.Sleep(50 * time.Millisecond) }

type call struct {
	ev alarm.Event
	at time.Time
}

// fakeNotifier records calls with their times and answers from a script,
// then with fallback.
type fakeNotifier struct {
	name  string
	clock *fakeClock

	mu       sync.Mutex
	calls    []call
	script   []notify.Result
	fallback notify.Result
}

func newFake(name string, clock *fakeClock, script ...notify.Result) *fakeNotifier {
	return &fakeNotifier{name: name, clock: clock, script: script, fallback: notify.Result{Verdict: notify.Delivered}}
}

func (f *fakeNotifier) Name() string { return f.name }

func (f *fakeNotifier) Notify(ctx context.Context, ev alarm.Event) notify.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{ev: ev, at: f.clock.Now()})
	if len(f.script) > 0 {
		r := f.script[0]
		f.script = f.script[1:]
		return r
	}
	return f.fallback
}

func (f *fakeNotifier) setFallback(r notify.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fallback = r
}

func (f *fakeNotifier) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeNotifier) waitCalls(t *testing.T, n int) []call {
	t.Helper()
	waitFor(t, f.name+" calls", func() bool { return len(f.Calls()) >= n })
	return f.Calls()
}
