package sdnotify

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestHeartbeatsCheck(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	h := NewHeartbeats(clock.now)
	check := h.Check(10 * time.Second)

	if err := check(); err != nil {
		t.Fatalf("no loops watched yet: %v", err)
	}
	h.Beat("reader/oximeter-1")
	h.Beat("reader/nibp-1")
	h.Beat("publisher")
	clock.advance(10 * time.Second)
	if err := check(); err != nil {
		t.Fatalf("every loop beat exactly at the limit: %v", err)
	}

	clock.advance(time.Second)
	h.Beat("publisher")
	err := check()
	var stalled *StalledError
	if !errors.As(err, &stalled) {
		t.Fatalf("two loops silent for 11s under a 10s limit: err = %v, want *StalledError", err)
	}
	if want := []string{"reader/nibp-1", "reader/oximeter-1"}; strings.Join(stalled.Loops, ",") != strings.Join(want, ",") {
		t.Errorf("stalled loops %v, want %v (sorted)", stalled.Loops, want)
	}
	for i, d := range stalled.Silent {
		if d != 11*time.Second {
			t.Errorf("%s silent %v, want 11s", stalled.Loops[i], d)
		}
	}
	if stalled.Limit != 10*time.Second {
		t.Errorf("Limit = %v", stalled.Limit)
	}
	if msg := err.Error(); !strings.Contains(msg, "reader/oximeter-1 (11s)") || !strings.Contains(msg, "10s") {
		t.Errorf("error text %q does not name the loop, its silence and the limit", msg)
	}

	// A loop ended on purpose is no longer watched; one that beats again
	// is no longer stalled.
	h.Remove("reader/nibp-1")
	h.Beat("reader/oximeter-1")
	if err := check(); err != nil {
		t.Errorf("after Remove and a fresh beat: %v", err)
	}
}

func TestHeartbeatsConcurrentBeats(t *testing.T) {
	h := NewHeartbeats(nil)
	check := h.Check(time.Hour)
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				h.Beat(name)
				if err := check(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestWatchdogWithHeartbeats joins the two as the agent does: a loop that
// stops beating stops the pings.
func TestWatchdogWithHeartbeats(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	h := NewHeartbeats(clock.now)
	h.Beat("reader/oximeter-1")
	check := h.Check(10 * time.Second)
	if err := check(); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	if err := check(); err == nil {
		t.Fatal("a loop silent for a minute passed the check")
	}
}
