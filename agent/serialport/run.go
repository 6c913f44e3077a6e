package serialport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"go.bug.st/serial"
)

// Handler receives one Target's connection events, all from Run's goroutine
// and in order.
type Handler interface {
	// Connected is called after each successful open with a writer to the
	// port, for start commands and keep-alives. The writer may be used from
	// any goroutine (writes are serialized) until the matching Disconnected;
	// after that it returns ErrNotConnected. port is the device path opened,
	// links followed (/dev/ttyUSB1, /dev/pts/3).
	Connected(w io.Writer, port string, now time.Time)
	// Data is called with each chunk read, in order. p is only valid during
	// the call.
	Data(p []byte, now time.Time)
	// Disconnected reports a change to "not connected", with the reason:
	// an open port was lost (*LostError), the very first open attempt failed
	// (the open error), or Run's context ended while connected (an error
	// wrapping ErrStopped). Failed reopens while already disconnected are
	// not reported again (they are logged when the reason changes). Every
	// Connected is followed by exactly one Disconnected.
	Disconnected(err error, now time.Time)
}

// ErrStopped is wrapped by the Disconnected error of a connection closed
// because Run's context ended; it is not a device fault.
var ErrStopped = errors.New("serialport: stopped")

// ErrNotConnected is returned by a Connected writer used after its
// connection ended.
var ErrNotConnected = errors.New("serialport: port is not connected")

// LostError is an open port that failed: the device was unplugged, a pty
// master closed, or the tty reported an I/O error. Any read error counts:
// a port that cannot be read is as good as gone.
type LostError struct {
	Port string // the device path that was open
	Err  error  // the read error (*serial.PortError, syscall.EIO, io.EOF, ...)
}

func (e *LostError) Error() string {
	return fmt.Sprintf("serialport: %s lost: %v", e.Port, e.Err)
}

func (e *LostError) Unwrap() error { return e.Err }

const (
	// Reopen backoff: the first retry soon after a loss (a replugged device
	// enumerates within about a second), then doubling so a device that is
	// gone for good costs one open attempt every maxRetry.
	firstRetry = 100 * time.Millisecond
	maxRetry   = 2 * time.Second
	// stableAfter is how long a connection must have lasted for the backoff
	// to start again from firstRetry; a port that opens and fails at once
	// keeps backing off instead of flapping ten times a second.
	stableAfter = maxRetry
	// readBufSize holds more than a second of data at 9600 baud (protocols.md
	// links are 9600 to 115200 baud); a Read returns what is there.
	readBufSize = 4096
	// writeDrainWait is how long closing a port waits for a write in
	// progress. Without flow control a UART always drains, and an unplug
	// fails the write, so this only bounds a pathological stall.
	writeDrainWait = time.Second
)

// Run keeps t connected until ctx ends: it opens the port, calls Connected,
// feeds every chunk read to Data, and on any read error closes the port,
// calls Disconnected and reopens with backoff (100 ms doubling to at most
// 2 s between attempts), resolving t's path or USB identity again each time.
// When ctx ends Run closes the port and returns nil. It returns early only
// when t can never be opened: a *TargetError or *LinkError, before any
// attempt. A nil logger discards logs.
func Run(ctx context.Context, t Target, h Handler, logger *slog.Logger) error {
	return hostLayout.run(ctx, t, h, logger)
}

func (l sysLayout) run(ctx context.Context, t Target, h Handler, logger *slog.Logger) error {
	mode, err := t.mode()
	if err != nil {
		return err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("target", t.String())

	retry := firstRetry
	// wait sleeps for the current backoff and doubles it; false when ctx
	// ended during the wait.
	wait := func() bool {
		timer := time.NewTimer(retry)
		defer timer.Stop()
		retry = min(retry*2, maxRetry)
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		}
	}
	down := false    // Disconnected reported, no Connected since
	lastReason := "" // the last failure logged, to log changes only

	for ctx.Err() == nil {
		port, name, err := l.open(t, mode)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			switch reason := err.Error(); {
			case !down:
				logger.Warn("serial port unavailable", "err", err)
				h.Disconnected(err, time.Now())
				down = true
				lastReason = reason
			case reason != lastReason:
				logger.Warn("serial port still unavailable", "err", err)
				lastReason = reason
			default:
				logger.Debug("serial port still unavailable", "err", err)
			}
			if !wait() {
				break
			}
			continue
		}

		connectedAt := time.Now()
		logger.Info("serial port connected", "port", name)
		w := &portWriter{port: port, name: name, turn: make(chan struct{}, 1)}
		h.Connected(w, name, connectedAt)
		readErr := readLoop(ctx, port, h)
		if err := w.close(); err != nil {
			logger.Debug("closing serial port", "port", name, "err", err)
		}
		if readErr == nil {
			logger.Info("serial port closed", "port", name)
			h.Disconnected(fmt.Errorf("%w: %s closed: %w", ErrStopped, name, context.Cause(ctx)), time.Now())
			return nil
		}
		lost := &LostError{Port: name, Err: readErr}
		logger.Warn("serial port lost", "port", name, "err", readErr)
		h.Disconnected(lost, time.Now())
		down, lastReason = true, lost.Error()
		if time.Since(connectedAt) >= stableAfter {
			retry = firstRetry
		}
		if !wait() {
			break
		}
	}
	return nil
}

// readLoop feeds h until a read fails (returned) or ctx ends (nil). The port
// is never closed while a Read is pending (Run closes it after this
// returns), so a PortClosed error here always means the device went away,
// although the library uses the same code for a local Close.
func readLoop(ctx context.Context, port serial.Port, h Handler) error {
	buf := make([]byte, readBufSize)
	for ctx.Err() == nil {
		n, err := port.Read(buf)
		if n > 0 {
			h.Data(buf[:n], time.Now())
		}
		if err != nil {
			return err
		}
		// (0, nil) is the read timeout, not end of file: check ctx, read on.
	}
	return nil
}

// portWriter is the io.Writer a Handler gets for one connection.
type portWriter struct {
	port   serial.Port
	name   string
	turn   chan struct{} // one slot: the right to write, or to close
	closed atomic.Bool
}

func (w *portWriter) Write(p []byte) (int, error) {
	w.turn <- struct{}{}
	defer func() { <-w.turn }()
	written := 0
	for written < len(p) {
		// Checked under the turn, so no write starts on a closed port, whose
		// file descriptor number may already belong to another file.
		if w.closed.Load() {
			return written, ErrNotConnected
		}
		n, err := w.port.Write(p[written:])
		written += n
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return written, fmt.Errorf("serialport: write %s: %w", w.name, err)
		case n == 0:
			return written, io.ErrShortWrite
		}
	}
	return written, nil
}

// close ends the connection's writes and closes the port.
func (w *portWriter) close() error {
	w.closed.Store(true)
	timer := time.NewTimer(writeDrainWait)
	defer timer.Stop()
	select {
	case w.turn <- struct{}{}:
		defer func() { <-w.turn }()
	case <-timer.C:
		// A write has stalled inside the kernel for a second. Close anyway so
		// Run goes on; the stalled write fails when the device goes away, and
		// every later write sees closed.
	}
	return w.port.Close()
}
