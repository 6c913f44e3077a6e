package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// commandCounter is a decoder that takes nibp_start and refuses it while
// busy, as an NIBP module does during a measurement.
type commandCounter struct {
	mu       sync.Mutex
	started  int
	refused  int
	busy     bool
	commands []string
}

func (c *commandCounter) Feed([]byte, time.Time, drivers.Sink) {}
func (c *commandCounter) Commands() []string                   { return []string{"nibp_start"} }
func (c *commandCounter) Command(name string, _ io.Writer, _ time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if name != "nibp_start" {
		return drivers.ErrUnknownCommand
	}
	if c.busy {
		c.refused++
		return errors.New("a measurement is running")
	}
	c.started++
	return nil
}

// TestNIBPSchedule: the schedule starts a measurement every interval on the
// open connection; a start refused because one is running is skipped, not
// queued.
func TestNIBPSchedule(t *testing.T) {
	dec := &commandCounter{}
	d := &device{
		id:        "nibp-1",
		driver:    &drivers.Driver{Name: "fake", NewDecoder: func(drivers.Options) (drivers.Decoder, error) { return dec, nil }},
		nibpEvery: 20 * time.Millisecond,
		logger:    slog.New(slog.DiscardHandler),
		pipe:      &pipeline{device: "nibp-1"},
		runCtx:    context.Background(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.scheduleNIBP(ctx)
	}()
	// Not connected: nothing is started.
	time.Sleep(100 * time.Millisecond)
	dec.mu.Lock()
	if dec.started != 0 {
		t.Errorf("%d measurements started while disconnected", dec.started)
	}
	dec.mu.Unlock()

	d.Connected(io.Discard, "/dev/fake", time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for {
		dec.mu.Lock()
		n := dec.started
		dec.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d measurements started", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	dec.mu.Lock()
	dec.busy = true
	started := dec.started
	dec.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	dec.mu.Lock()
	if dec.refused == 0 || dec.started != started {
		t.Errorf("while busy: %d refused, %d started (was %d)", dec.refused, dec.started, started)
	}
	dec.busy = false
	dec.mu.Unlock()
	cancel()
	<-done
}
