package sdnotify

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// notifySocket plays systemd's end of the protocol: a unixgram socket named
// by NOTIFY_SOCKET. The directory is short because socket paths are limited
// to 108 bytes, which t.TempDir's long names can exceed.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// receive returns the next datagram, failing the test when none arrives
// within a generous deadline.
func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no datagram on NOTIFY_SOCKET: %v", err)
	}
	return string(buf[:n])
}

// queued returns the datagrams already waiting on the socket, without
// waiting for more (a non-blocking recvfrom: a read deadline in the past
// would fail before looking). A unixgram write is in the receiver's queue
// when it returns, so everything sent before a synchronisation point is
// here.
func queued(t *testing.T, conn *net.UnixConn) []string {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	buf := make([]byte, 4096)
	for {
		var (
			n       int
			recvErr error
		)
		if err := raw.Read(func(fd uintptr) bool {
			n, _, recvErr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if errors.Is(recvErr, syscall.EAGAIN) {
			return out
		}
		if recvErr != nil {
			t.Fatal(recvErr)
		}
		out = append(out, string(buf[:n]))
	}
}

func TestWithoutNotifySocketNothingIsSent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for name, call := range map[string]func() (bool, error){
		"Ready":    Ready,
		"Stopping": Stopping,
		"Status":   func() (bool, error) { return Status("running") },
	} {
		sent, err := call()
		if sent || err != nil {
			t.Errorf("%s without NOTIFY_SOCKET = (%v, %v), want (false, nil)", name, sent, err)
		}
	}
}

func TestReadyStoppingStatusDatagrams(t *testing.T) {
	conn := notifySocket(t)
	for _, tc := range []struct {
		name string
		call func() (bool, error)
		want string
	}{
		{"Ready", Ready, "READY=1"},
		{"Status", func() (bool, error) { return Status("2 devices, MQTT connected") }, "STATUS=2 devices, MQTT connected"},
		// A newline in the text must not smuggle in another assignment.
		{"Status with newline", func() (bool, error) { return Status("ok\nREADY=1\r\nWATCHDOG=1") }, "STATUS=ok READY=1  WATCHDOG=1"},
		{"Stopping", Stopping, "STOPPING=1"},
	} {
		sent, err := tc.call()
		if !sent || err != nil {
			t.Fatalf("%s = (%v, %v), want (true, nil)", tc.name, sent, err)
		}
		if got := receive(t, conn); got != tc.want {
			t.Errorf("%s sent %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestNotifySocketUnreachableIsAnError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if sent, err := Ready(); sent || err == nil {
		t.Errorf("Ready to a missing socket = (%v, %v), want (false, error)", sent, err)
	}
}

func TestNewWatchdogSettings(t *testing.T) {
	pass := func() error { return nil }
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name         string
		usec, wdPID  string
		wantInterval time.Duration
		wantErr      bool
	}{
		{name: "unset", wantInterval: 0},
		{name: "30 s for this process", usec: "30000000", wdPID: pid, wantInterval: 30 * time.Second},
		{name: "no pid given", usec: "30000000", wantInterval: 30 * time.Second},
		{name: "another process's watchdog", usec: "30000000", wdPID: strconv.Itoa(os.Getpid() + 1), wantInterval: 0},
		{name: "not a number", usec: "thirty", wantErr: true},
		{name: "zero", usec: "0", wantErr: true},
		{name: "negative", usec: "-5", wantErr: true},
		{name: "bad pid", usec: "30000000", wdPID: "me", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.wdPID)
			w, err := NewWatchdog(pass, nil)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("NewWatchdog accepted WATCHDOG_USEC=%q WATCHDOG_PID=%q", tc.usec, tc.wdPID)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.Interval() != tc.wantInterval {
				t.Errorf("Interval = %v, want %v", w.Interval(), tc.wantInterval)
			}
			if w.PingPeriod() != tc.wantInterval/2 {
				t.Errorf("PingPeriod = %v, want %v", w.PingPeriod(), tc.wantInterval/2)
			}
		})
	}
}

func TestNewWatchdogNeedsProgressCheck(t *testing.T) {
	if _, err := NewWatchdog(nil, nil); !errors.Is(err, ErrNoProgressCheck) {
		t.Errorf("NewWatchdog(nil) error = %v, want ErrNoProgressCheck", err)
	}
}

func TestDisabledWatchdogRunReturnsAtOnce(t *testing.T) {
	conn := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "")
	w, err := NewWatchdog(func() error {
		t.Error("progress checked with the watchdog disabled")
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Run(context.Background()) // would block forever if it did not return
	if got := queued(t, conn); len(got) != 0 {
		t.Errorf("a disabled watchdog sent %q", got)
	}
}

// lockedBuffer collects log output written from Run's goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWatchdogPingsOnlyWhileProgressPasses steps the watchdog one check at a
// time: the progress check announces itself on asked, then waits for the
// test's verdict on verdicts. When the next check announces itself, the
// previous turn (its ping or its silence) is complete, so the datagrams
// queued on the socket are exactly what that turn sent.
func TestWatchdogPingsOnlyWhileProgressPasses(t *testing.T) {
	conn := notifySocket(t)
	// 20 ms: the turns come quickly; nothing here depends on their pace.
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := make(chan struct{})
	verdicts := make(chan error)
	stopped := errors.New("test over")
	logs := &lockedBuffer{}
	w, err := NewWatchdog(func() error {
		select {
		case asked <- struct{}{}:
		case <-ctx.Done():
			return stopped
		}
		select {
		case v := <-verdicts:
			return v
		case <-ctx.Done():
			return stopped
		}
	}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if w.Interval() != 20*time.Millisecond {
		t.Fatalf("Interval = %v", w.Interval())
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()

	wedged := errors.New("device reader oximeter-1 has not gone round for 40s")
	steps := []struct {
		verdict  error
		wantPing bool
	}{
		{nil, true}, // the first check runs at once
		{nil, true},
		{wedged, false},
		{wedged, false},
		{wedged, false},
		{nil, true}, // progress again: pings resume
		{wedged, false},
	}
	<-asked // the first check waits for its verdict
	for i, s := range steps {
		if got := queued(t, conn); len(got) != 0 {
			t.Fatalf("step %d: datagrams %q before the verdict", i, got)
		}
		verdicts <- s.verdict
		<-asked // the next check waits: the turn that took the verdict is over
		got := queued(t, conn)
		switch {
		case s.wantPing && (len(got) != 1 || got[0] != "WATCHDOG=1"):
			t.Fatalf("step %d: progress passed, sent %q, want exactly [WATCHDOG=1]", i, got)
		case !s.wantPing && len(got) != 0:
			t.Fatalf("step %d: progress failed, sent %q, want nothing", i, got)
		}
	}
	cancel()
	<-done
	out := logs.String()
	if !strings.Contains(out, "not pinging the systemd watchdog") || !strings.Contains(out, wedged.Error()) {
		t.Errorf("the log does not say why the pings stopped:\n%s", out)
	}
	if n := strings.Count(out, "not pinging the systemd watchdog"); n != 2 {
		t.Errorf("the stall was logged %d times, want once per stall (2):\n%s", n, out)
	}
	if !strings.Contains(out, "making progress again") {
		t.Errorf("the log does not say the pings resumed:\n%s", out)
	}
}
