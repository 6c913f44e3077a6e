package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/drivers"
)

func TestMain(m *testing.M) {
	// The crash test re-executes this binary as the process it kills.
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(runCrashChild(path))
	}
	goleak.VerifyTestMain(m)
}

// t0 is the tests' fixed start time: UTC, with nanoseconds, so a round trip
// that lost precision or location would show.
var t0 = time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openTest(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	s, err := Open(filepath.Join(t.TempDir(), "vigil.db"), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// runningWriter is a Writer whose Run goroutine the test owns.
type runningWriter struct {
	*Writer
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, once done
}

// stop ends Run and returns its result.
func (w *runningWriter) stop() error {
	w.cancel()
	<-w.done
	return w.err
}

func startWriter(t testing.TB, s *Store, o WriterOptions) *runningWriter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &runningWriter{Writer: s.NewWriter(o), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			t.Errorf("writer did not stop")
		}
	})
	return w
}

func flush(t testing.TB, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func numeric(device string, seq uint64, m drivers.MetricID, v float64, at time.Time) *drivers.Reading {
	return &drivers.Reading{Device: device, Seq: seq, Metric: m, Value: v, Valid: true, Received: at}
}

func pleth(device string, seq uint64, at time.Time, samples ...float64) *drivers.Reading {
	return &drivers.Reading{Device: device, Seq: seq, Metric: drivers.Pleth, Samples: samples, SampleRate: 75,
		Valid: true, Received: at}
}

// readingItem is a reading with its MQTT message, as the agent adds them.
func readingItem(r *drivers.Reading, session string) Item {
	return Item{
		Reading: r, Session: session,
		Outbox: &Message{Topic: "vigil/site/room-1/" + r.Device + "/" + r.Metric.String(),
			Payload: fmt.Appendf(nil, `{"seq":%d,"value":%g}`, r.Seq, r.Value), QoS: 1},
	}
}

// commitLog collects OnCommit calls.
type commitLog struct {
	mu      sync.Mutex
	batches [][]OutboxEntry
}

func (c *commitLog) onCommit(entries []OutboxEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, append([]OutboxEntry(nil), entries...))
}

func (c *commitLog) sizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, len(c.batches))
	for i, b := range c.batches {
		out[i] = len(b)
	}
	return out
}

func (c *commitLog) all() []OutboxEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []OutboxEntry
	for _, b := range c.batches {
		out = append(out, b...)
	}
	return out
}

// errorLog collects OnError calls and signals each.
type errorLog struct {
	mu   sync.Mutex
	errs []error
	seen chan struct{}
}

func newErrorLog() *errorLog { return &errorLog{seen: make(chan struct{}, 1)} }

func (e *errorLog) onError(err error) {
	e.mu.Lock()
	e.errs = append(e.errs, err)
	e.mu.Unlock()
	select {
	case e.seen <- struct{}{}:
	default:
	}
}

// waitFor waits until an error matching target was reported.
func (e *errorLog) waitFor(t testing.TB, target error) error {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		e.mu.Lock()
		for _, err := range e.errs {
			if errors.Is(err, target) {
				e.mu.Unlock()
				return err
			}
		}
		n := len(e.errs)
		e.mu.Unlock()
		select {
		case <-e.seen:
		case <-deadline:
			t.Fatalf("no %v reported within 30 s (%d other errors)", target, n)
		}
	}
}

func alarmEventAt(at time.Time) *alarm.Event {
	return &alarm.Event{AlarmID: "spo2-low/ox", EventID: "e", Phase: alarm.PhaseStart, Kind: alarm.Physiological,
		Priority: alarm.Medium, State: alarm.Active, Text: "** SpO2 low", Site: "clinic", Room: "room-1", Onset: at, Sent: at}
}

func auditAt(at time.Time) *audit.Entry {
	return &audit.Entry{Time: at, Type: audit.TypeAgent, What: "started"}
}
