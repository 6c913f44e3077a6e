package sdnotify

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Heartbeats records when each of the agent's loops last went round, for
// the watchdog's progress check. A loop beats once per turn whether or not
// it produced anything: a device reader beats after every read, timeouts
// and reconnect attempts included; the publisher after every message or
// idle wait. Progress means "not wedged", never "readings arrive": an
// unplugged oximeter is a technical alarm, and restarting the agent would
// not plug it back in.
type Heartbeats struct {
	now func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
}

// NewHeartbeats returns an empty set; now is the clock (nil: time.Now).
func NewHeartbeats(now func() time.Time) *Heartbeats {
	if now == nil {
		now = time.Now
	}
	return &Heartbeats{now: now, last: map[string]time.Time{}}
}

// Beat records that the loop called name went round now. The first Beat of
// a name adds it to what Check watches.
func (h *Heartbeats) Beat(name string) {
	t := h.now()
	h.mu.Lock()
	h.last[name] = t
	h.mu.Unlock()
}

// Remove stops watching name: a loop that ended on purpose (its device was
// removed, the agent is stopping) is not a stalled loop.
func (h *Heartbeats) Remove(name string) {
	h.mu.Lock()
	delete(h.last, name)
	h.mu.Unlock()
}

// StalledError names the loops that have not gone round within the limit.
type StalledError struct {
	Loops  []string        // sorted
	Silent []time.Duration // how long each loop has been silent, same order
	Limit  time.Duration
}

func (e *StalledError) Error() string {
	parts := make([]string, len(e.Loops))
	for i, name := range e.Loops {
		parts[i] = fmt.Sprintf("%s (%s)", name, e.Silent[i].Round(time.Millisecond))
	}
	return fmt.Sprintf("no progress within %s: %s", e.Limit, strings.Join(parts, ", "))
}

// Check returns a progress check for NewWatchdog: it fails with a
// *StalledError when any watched loop has not beaten within limit. Choose
// limit above the longest turn a healthy loop takes (a read timeout, a
// reconnect backoff) and below the unit's WatchdogSec, so a wedged loop
// leads to a restart and a slow one does not.
func (h *Heartbeats) Check(limit time.Duration) func() error {
	return func() error {
		now := h.now()
		h.mu.Lock()
		var stalled []string
		for name, t := range h.last {
			if now.Sub(t) > limit {
				stalled = append(stalled, name)
			}
		}
		slices.Sort(stalled)
		silent := make([]time.Duration, len(stalled))
		for i, name := range stalled {
			silent[i] = now.Sub(h.last[name])
		}
		h.mu.Unlock()
		if len(stalled) == 0 {
			return nil
		}
		return &StalledError{Loops: stalled, Silent: silent, Limit: limit}
	}
}
