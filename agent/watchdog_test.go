package agent_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// notifySocket is a systemd notification socket for the test: it records
// every datagram the agent sends.
type notifySocket struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
	done chan struct{}
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySocket{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	t.Setenv("NOTIFY_SOCKET", path)
	return s
}

func (s *notifySocket) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		if strings.Contains(m, msg) {
			n++
		}
	}
	return n
}

// TestSystemdNotifyAndWatchdog: under systemd (Type=notify, WatchdogSec) the
// agent says READY=1 once it serves, pings WATCHDOG=1 while its loops go
// round, and says STOPPING=1 when it stops.
func TestSystemdNotifyAndWatchdog(t *testing.T) {
	sock := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "2000000") // 2 s: a ping at least every second
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ox := newFakeOximeter(t)
	cfg := testConfig(t, ox.link, "embedded")
	ra := startAgent(t, cfg)
	waitFor(t, "READY=1", 10*time.Second, func() bool { return sock.count("READY=1") == 1 })
	ox.send(frame(97, 70, 0))
	waitFor(t, "watchdog pings", 15*time.Second, func() bool { return sock.count("WATCHDOG=1") >= 3 })
	ra.stop(t)
	if sock.count("STOPPING=1") != 1 {
		t.Errorf("STOPPING=1 sent %d times", sock.count("STOPPING=1"))
	}
}
