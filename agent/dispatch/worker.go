package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// worker sends one channel's messages, one at a time and in order, so a
// channel never sees an end before its start.
type worker struct {
	name string
	n    notify.Notifier
	d    *Dispatcher
	wake chan struct{} // capacity 1: something was queued

	mu    sync.Mutex
	queue []alarm.Event
}

// enqueue adds ev without blocking. A full queue drops its oldest update:
// a start or an end is never dropped, since a lost start is a missed alarm
// and a lost end leaves a phone ringing.
func (w *worker) enqueue(ev alarm.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	if len(w.queue) > QueueSize {
		for i, q := range w.queue {
			if q.Phase == alarm.PhaseUpdate {
				w.queue = append(w.queue[:i], w.queue[i+1:]...)
				w.d.dropped.Add(1)
				w.d.log.Warn("channel queue full; dropped its oldest update", "channel", w.name, "alarm", q.AlarmID)
				break
			}
		}
		// Only starts and ends queued: keep them all, over the bound.
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) next() (alarm.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return alarm.Event{}, false
	}
	ev := w.queue[0]
	w.queue = w.queue[1:]
	return ev, true
}

// endQueued reports whether the end of occurrence eventID waits in the
// queue: the alarm is over, so retrying its earlier message is pointless.
func (w *worker) endQueued(eventID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, q := range w.queue {
		if q.Phase == alarm.PhaseEnd && q.EventID == eventID {
			return true
		}
	}
	return false
}

func (w *worker) run(ctx context.Context) {
	for {
		for {
			ev, ok := w.next()
			if !ok {
				break
			}
			w.send(ctx, ev)
			if ctx.Err() != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
	}
}

// send delivers ev, retrying on Retry with exponential backoff (or the
// service's RetryAfter) for at most MaxRetryDuration, or until ev's alarm
// ends. GiveUp is logged and not retried.
func (w *worker) send(ctx context.Context, ev alarm.Event) {
	d := w.d
	first := d.now()
	backoff := FirstBackoff
	for attempt := 1; ; attempt++ {
		start := d.now()
		r := w.n.Notify(ctx, ev)
		end := d.now()
		if ctx.Err() != nil && r.Verdict != notify.Delivered {
			return // shutting down: not the channel's failure
		}
		if d.onResult != nil {
			d.onResult(w.name, ev, r, end.Sub(start))
		}
		d.attempted(r.Verdict == notify.Delivered, end)
		switch r.Verdict {
		case notify.Delivered:
			return
		case notify.Retry:
		default: // GiveUp, or a verdict the channel should not give
			d.log.Error("channel gave up on a message", "channel", w.name, "alarm", ev.AlarmID,
				"phase", string(ev.Phase), "verdict", r.Verdict.String(), "err", r.Err)
			return
		}
		wait := backoff
		if r.RetryAfter > 0 {
			wait = r.RetryAfter
		}
		backoff = min(backoff*2, MaxBackoff)
		if end.Add(wait).Sub(first) > MaxRetryDuration {
			d.log.Error("channel retries exhausted; message dropped", "channel", w.name, "alarm", ev.AlarmID,
				"phase", string(ev.Phase), "attempts", attempt, "err", r.Err)
			return
		}
		d.log.Warn("channel send failed; retrying", "channel", w.name, "alarm", ev.AlarmID,
			"attempt", attempt, "wait", wait, "err", r.Err)
		if !w.wait(ctx, wait, ev) {
			return
		}
	}
}

// wait sleeps for d on the dispatcher's timer source. It returns false when
// ctx ends, or when ev is not an end and its alarm's end is queued.
func (w *worker) wait(ctx context.Context, d time.Duration, ev alarm.Event) bool {
	timer := w.d.after(d)
	for {
		if ev.Phase != alarm.PhaseEnd && w.endQueued(ev.EventID) {
			w.d.log.Info("alarm ended while retrying; message dropped", "channel", w.name, "alarm", ev.AlarmID)
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-timer:
			return true
		case <-w.wake:
			// Something was queued: the loop re-checks for the alarm's end.
			// run drains the queue after send returns, so the consumed wake
			// loses nothing.
		}
	}
}
