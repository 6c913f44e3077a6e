package serialport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit is how long a test waits for something that should happen
// within a second; generous so a loaded CI machine does not fail the test.
const waitLimit = 5 * time.Second

var link8N1 = drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}

// recorder is a Handler that keeps everything it is told.
type recorder struct {
	mu      sync.Mutex
	events  []string // "connected <port>" and "disconnected", in order
	writers []io.Writer
	discErr []error
	discAt  []time.Time
	data    []byte
	// onConnected, when set, runs inside Connected.
	onConnected func(w io.Writer)
}

func (r *recorder) Connected(w io.Writer, port string, now time.Time) {
	r.mu.Lock()
	r.events = append(r.events, "connected "+port)
	r.writers = append(r.writers, w)
	hook := r.onConnected
	r.mu.Unlock()
	if hook != nil {
		hook(w)
	}
}

func (r *recorder) Data(p []byte, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data = append(r.data, p...)
}

func (r *recorder) Disconnected(err error, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "disconnected")
	r.discErr = append(r.discErr, err)
	r.discAt = append(r.discAt, now)
}

// snapshot returns copies of the events and data so far.
func (r *recorder) snapshot() (events []string, data []byte, errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...), append([]byte(nil), r.data...), append([]error(nil), r.discErr...)
}

func (r *recorder) writer(i int) io.Writer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writers[i]
}

// waitFor polls cond until it holds or waitLimit passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *recorder) waitEvents(t *testing.T, n int) []string {
	t.Helper()
	var events []string
	waitFor(t, fmt.Sprintf("%d connection events", n), func() bool {
		events, _, _ = r.snapshot()
		return len(events) >= n
	})
	return events
}

func (r *recorder) waitData(t *testing.T, want []byte) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d bytes of data", len(want)), func() bool {
		_, data, _ := r.snapshot()
		return len(data) >= len(want)
	})
	if _, data, _ := r.snapshot(); !bytes.Equal(data, want) {
		t.Fatalf("data = %q, want %q", data, want)
	}
}

// newPTY opens a pseudo-terminal and returns its master and the slave's
// path. The test's own slave descriptor is closed at once, so the port Run
// opens is the slave's only user: a master read then fails with EIO exactly
// when that port is closed. The master is closed at cleanup unless the test
// closed it (an unplug).
func newPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatalf("opening a pty: %v", err)
	}
	path := slave.Name()
	if err := slave.Close(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Close() })
	return master, path
}

// pointLink makes link point at target atomically, as udev re-pointing a
// /dev/serial/by-id link does.
func pointLink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// running is one Run in its own goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func startRun(t *testing.T, l sysLayout, tg Target, h Handler, logger *slog.Logger) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- l.run(ctx, tg, h, logger) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it; a second call is a no-op check.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Run did not return within %v of cancel", waitLimit)
	}
}

// readMaster reads n bytes from a pty master, with a deadline.
func readMaster(t *testing.T, master *os.File, n int) []byte {
	t.Helper()
	if err := master.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(master, buf); err != nil {
		t.Fatalf("reading %d bytes from the pty master: %v", n, err)
	}
	return buf
}

func write(t *testing.T, w io.Writer, p []byte) {
	t.Helper()
	if n, err := w.Write(p); err != nil || n != len(p) {
		t.Fatalf("write = %d, %v; want %d, nil", n, err, len(p))
	}
}

func TestRunDeliversDataInOrder(t *testing.T) {
	master, path := newPTY(t)
	h := &recorder{}
	startRun(t, hostLayout, Target{Path: path, Link: link8N1}, h, nil)
	if events := h.waitEvents(t, 1); events[0] != "connected "+path {
		t.Fatalf("events = %q", events)
	}

	// Every byte value, in chunks of varying size, so raw mode and ordering
	// are both checked.
	var want []byte
	for i := 0; i < 300; i++ {
		chunk := make([]byte, 1+i%37)
		for j := range chunk {
			chunk[j] = byte(len(want) + j)
		}
		want = append(want, chunk...)
		write(t, master, chunk)
	}
	h.waitData(t, want)
}

func TestRunReportsUnplug(t *testing.T) {
	master, path := newPTY(t)
	h := &recorder{}
	run := startRun(t, hostLayout, Target{Path: path, Link: link8N1}, h, nil)
	h.waitEvents(t, 1)

	// The slave loses unread bytes when the master closes, so the frame must
	// have been read before the unplug.
	frame := []byte("SPO2=97 PR=72\r\n")
	write(t, master, frame)
	h.waitData(t, frame)

	unplugged := time.Now()
	if err := master.Close(); err != nil {
		t.Fatal(err)
	}
	events := h.waitEvents(t, 2)
	if events[1] != "disconnected" {
		t.Fatalf("events = %q", events)
	}
	h.mu.Lock()
	err, at := h.discErr[0], h.discAt[0]
	h.mu.Unlock()
	t.Logf("Disconnected %v after the master closed: %v", at.Sub(unplugged), err)
	var lost *LostError
	if !errors.As(err, &lost) || lost.Port != path {
		t.Fatalf("Disconnected(%v), want a *LostError for %s", err, path)
	}
	if errors.Is(err, ErrStopped) {
		t.Fatalf("an unplug reported as a stop: %v", err)
	}
	if _, werr := h.writer(0).Write([]byte("x")); !errors.Is(werr, ErrNotConnected) {
		t.Errorf("write after unplug = %v, want ErrNotConnected", werr)
	}

	// Reopening keeps failing (the pty is gone): that is not reported again,
	// and stopping while disconnected reports nothing more.
	time.Sleep(500 * time.Millisecond)
	run.stop(t)
	if events, _, _ := h.snapshot(); len(events) != 2 {
		t.Errorf("events after stop = %q, want only the connect and the unplug", events)
	}
}

func TestRunReconnectsThroughRepointedLink(t *testing.T) {
	master1, path1 := newPTY(t)
	link := filepath.Join(t.TempDir(), "oximeter")
	pointLink(t, path1, link)

	h := &recorder{}
	run := startRun(t, hostLayout, Target{Path: link, Link: link8N1}, h, nil)
	if events := h.waitEvents(t, 1); events[0] != "connected "+path1 {
		t.Fatalf("events = %q, want connected %s", events, path1)
	}
	write(t, master1, []byte("first;"))
	h.waitData(t, []byte("first;"))

	if err := master1.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitEvents(t, 2)

	// Let at least one reopen fail against the dangling link before the
	// device comes back.
	time.Sleep(300 * time.Millisecond)
	master2, path2 := newPTY(t)
	pointLink(t, path2, link)
	events := h.waitEvents(t, 3)
	if events[2] != "connected "+path2 {
		t.Fatalf("events = %q, want a reconnect to %s", events, path2)
	}
	write(t, master2, []byte("second;"))
	h.waitData(t, []byte("first;second;"))

	// The new connection's writer reaches the new device.
	write(t, h.writer(1), []byte("ping"))
	if got := readMaster(t, master2, 4); string(got) != "ping" {
		t.Errorf("master2 read %q, want ping", got)
	}

	run.stop(t)
	events, _, errs := h.snapshot()
	want := []string{"connected " + path1, "disconnected", "connected " + path2, "disconnected"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", events, want)
	}
	if len(errs) == 2 && !errors.Is(errs[1], ErrStopped) {
		t.Errorf("last Disconnected(%v), want ErrStopped", errs[1])
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	master, path := newPTY(t)
	h := &recorder{}
	run := startRun(t, hostLayout, Target{Path: path, Link: link8N1}, h, nil)
	h.waitEvents(t, 1)

	cancelled := time.Now()
	run.stop(t)
	t.Logf("Run returned %v after cancel", time.Since(cancelled))

	events, _, errs := h.snapshot()
	if len(events) != 2 || events[1] != "disconnected" {
		t.Fatalf("events = %q, want connected then disconnected", events)
	}
	if !errors.Is(errs[0], ErrStopped) || !errors.Is(errs[0], context.Canceled) {
		t.Errorf("Disconnected(%v), want ErrStopped wrapping context.Canceled", errs[0])
	}
	var lost *LostError
	if errors.As(errs[0], &lost) {
		t.Errorf("a stop reported as a loss: %v", errs[0])
	}
	// The port is closed: with no slave open, a master read fails with EIO.
	if err := master.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	if _, err := master.Read(make([]byte, 1)); !errors.Is(err, syscall.EIO) {
		t.Errorf("master read after stop = %v, want EIO (slave closed)", err)
	}
	if _, err := h.writer(0).Write([]byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("write after stop = %v, want ErrNotConnected", err)
	}
}

func TestRunCancelWhileWaitingToReopen(t *testing.T) {
	h := &recorder{}
	run := startRun(t, hostLayout, Target{Path: filepath.Join(t.TempDir(), "absent"), Link: link8N1}, h, nil)
	h.waitEvents(t, 1)
	run.stop(t)
	if events, _, _ := h.snapshot(); len(events) != 1 {
		t.Errorf("events = %q, want one disconnected", events)
	}
}

// retryCounter is a slog handler counting the "still unavailable" records
// that each failed reopen logs.
type retryCounter struct {
	mu      sync.Mutex
	retries int
	warns   []string
}

func (c *retryCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *retryCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *retryCounter) WithGroup(string) slog.Handler            { return c }
func (c *retryCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.Contains(r.Message, "unavailable") {
		c.retries++
	}
	if r.Level >= slog.LevelWarn {
		c.warns = append(c.warns, r.Message)
	}
	return nil
}

func (c *retryCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retries
}

func TestRunMissingPathReportedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-yet")
	h := &recorder{}
	logs := &retryCounter{}
	startRun(t, hostLayout, Target{Path: path, Link: link8N1}, h, slog.New(logs))

	events := h.waitEvents(t, 1)
	if events[0] != "disconnected" {
		t.Fatalf("events = %q", events)
	}
	_, _, errs := h.snapshot()
	if !errors.Is(errs[0], os.ErrNotExist) {
		t.Fatalf("Disconnected(%v), want an error satisfying errors.Is(err, os.ErrNotExist)", errs[0])
	}
	waitFor(t, "three more open attempts", func() bool { return logs.count() >= 4 })
	if events, _, _ := h.snapshot(); len(events) != 1 {
		t.Fatalf("events after retries = %q, want a single disconnected", events)
	}
	logs.mu.Lock()
	if len(logs.warns) != 1 {
		t.Errorf("warnings = %q, want one: the same failure repeated is logged at debug", logs.warns)
	}
	logs.mu.Unlock()

	master, slave := newPTY(t)
	pointLink(t, slave, path)
	if events := h.waitEvents(t, 2); events[1] != "connected "+slave {
		t.Fatalf("events = %q, want connected %s", events, slave)
	}
	write(t, master, []byte("hello"))
	h.waitData(t, []byte("hello"))
}

func TestRunHandlerWrites(t *testing.T) {
	master, path := newPTY(t)
	start := []byte("START\r\n")
	h := &recorder{onConnected: func(w io.Writer) {
		// A start command written from inside Connected, as a Conversation's
		// Start does.
		if _, err := w.Write(start); err != nil {
			t.Errorf("start command: %v", err)
		}
	}}
	startRun(t, hostLayout, Target{Path: path, Link: link8N1}, h, nil)
	h.waitEvents(t, 1)
	if got := readMaster(t, master, len(start)); !bytes.Equal(got, start) {
		t.Fatalf("master read %q, want %q", got, start)
	}

	// Writes from several goroutines are serialized: every record arrives
	// whole.
	const writers, each, size = 4, 50, 8
	w := h.writer(0)
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rec := fmt.Sprintf("<%d:%03d>\n", g, i)[:size]
				if _, err := w.Write([]byte(rec)); err != nil {
					t.Errorf("writer %d: %v", g, err)
					return
				}
			}
		}()
	}
	got := readMaster(t, master, writers*each*size)
	wg.Wait()
	var records, want []string
	for i := 0; i < len(got); i += size {
		records = append(records, string(got[i:i+size]))
	}
	for g := 0; g < writers; g++ {
		for i := 0; i < each; i++ {
			want = append(want, fmt.Sprintf("<%d:%03d>\n", g, i)[:size])
		}
	}
	sort.Strings(records)
	sort.Strings(want)
	if strings.Join(records, "") != strings.Join(want, "") {
		t.Errorf("records arrived torn or lost:\n got %q\nwant %q", records, want)
	}
}

func TestRunFollowsUSBIdentityAcrossRenumbering(t *testing.T) {
	f := newFakeSys(t)
	u := USB{VID: "0403", PID: "6001", Serial: "A10KZP3Q"}
	master1, slave1 := newPTY(t)
	f.addUSBSerial("ttyUSB0", f.usbDevice("1-1", ftdi(u.Serial)), "0")
	f.symlink(slave1, f.dev("ttyUSB0"))

	h := &recorder{}
	run := startRun(t, f.layout, Target{USB: &u, Link: link8N1}, h, nil)
	if events := h.waitEvents(t, 1); events[0] != "connected "+slave1 {
		t.Fatalf("events = %q", events)
	}
	write(t, master1, []byte("a"))
	h.waitData(t, []byte("a"))

	// Unplug: the tty and its sysfs entry go away.
	if err := master1.Close(); err != nil {
		t.Fatal(err)
	}
	f.remove("ttyUSB0")
	if err := os.Remove(f.dev("ttyUSB0")); err != nil {
		t.Fatal(err)
	}
	h.waitEvents(t, 2)

	// Replug on another USB port: it comes back as ttyUSB1.
	master2, slave2 := newPTY(t)
	f.addUSBSerial("ttyUSB1", f.usbDevice("1-2", ftdi(u.Serial)), "0")
	f.symlink(slave2, f.dev("ttyUSB1"))
	if events := h.waitEvents(t, 3); events[2] != "connected "+slave2 {
		t.Fatalf("events = %q, want a reconnect to %s", events, slave2)
	}
	write(t, master2, []byte("b"))
	h.waitData(t, []byte("ab"))
	run.stop(t)
}

func TestRunReportsMissingUSBDevice(t *testing.T) {
	f := newFakeSys(t)
	f.addUSBSerial("ttyUSB0", f.usbDevice("1-1", ftdi("OTHER")), "0")
	u := USB{VID: "0403", PID: "6001", Serial: "A10KZP3Q"}
	h := &recorder{}
	startRun(t, f.layout, Target{USB: &u, Link: link8N1}, h, nil)
	h.waitEvents(t, 1)
	_, _, errs := h.snapshot()
	var nf *USBNotFoundError
	if !errors.As(errs[0], &nf) || nf.USB != u {
		t.Fatalf("Disconnected(%v), want a *USBNotFoundError for %s", errs[0], u)
	}
}

func TestRunRejectsInvalidTarget(t *testing.T) {
	h := &recorder{}
	err := Run(context.Background(), Target{Path: "/dev/ttyUSB0", Link: drivers.Link{Baud: 9600}}, h, nil)
	var le *LinkError
	if !errors.As(err, &le) {
		t.Errorf("Run with bad link = %v, want a *LinkError", err)
	}
	err = Run(context.Background(), Target{Link: link8N1}, h, nil)
	var te *TargetError
	if !errors.As(err, &te) {
		t.Errorf("Run without a port = %v, want a *TargetError", err)
	}
	if events, _, _ := h.snapshot(); len(events) != 0 {
		t.Errorf("handler called for an invalid target: %q", events)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Open(Target{Path: filepath.Join(dir, "ttyUSB7"), Link: link8N1})
	var oe *OpenError
	if !errors.Is(err, os.ErrNotExist) || !errors.As(err, &oe) {
		t.Errorf("Open(missing) = %v, want an *OpenError satisfying os.ErrNotExist", err)
	}
	if err != nil && strings.Count(err.Error(), "ttyUSB7") != 1 {
		t.Errorf("error %q should name the path once", err)
	}

	plain := filepath.Join(dir, "not-a-tty")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = Open(Target{Path: plain, Link: link8N1})
	if !errors.As(err, &oe) || errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(regular file) = %v, want an *OpenError that is not ErrNotExist", err)
	}
}

func TestOpenReadTimesOut(t *testing.T) {
	master, path := newPTY(t)
	port, dev, err := Open(Target{Path: path, Link: link8N1})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	if dev != path {
		t.Errorf("Open returned %s, want %s", dev, path)
	}
	// With nothing sent, Read returns (0, nil) once the timeout passes: a
	// timeout, not end of file.
	n, err := port.Read(make([]byte, 16))
	if n != 0 || err != nil {
		t.Fatalf("idle Read = %d, %v; want 0, nil", n, err)
	}
	write(t, master, []byte("z"))
	buf := make([]byte, 16)
	deadline := time.Now().Add(waitLimit)
	for n == 0 && err == nil && time.Now().Before(deadline) {
		n, err = port.Read(buf)
	}
	if err != nil || string(buf[:n]) != "z" {
		t.Fatalf("Read = %q, %v; want z", buf[:n], err)
	}
}
