// Package testbroker runs a real Mosquitto for tests: a private instance on a
// free loopback port, with its configuration and data in the test's
// temporary directory, stopped when the test ends.
//
// When /usr/sbin/mosquitto (or mosquitto on PATH) is missing the test is
// skipped, unless the environment variable CI is set: then it fails, so a CI
// machine without the broker cannot pass by skipping.
package testbroker

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultBinary is where Debian installs the broker.
const DefaultBinary = "/usr/sbin/mosquitto"

const (
	readyTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
	startTries   = 3 // a free port can be taken between choosing and binding it
)

// Option changes the broker's configuration.
type Option func(*config)

type config struct {
	persistence bool
	extra       []string
}

// WithPersistence turns on Mosquitto's persistence (in the test's temporary
// directory). Sessions, queued messages and retained messages then survive
// Stop and Start: Mosquitto writes its database on a clean shutdown.
func WithPersistence() Option { return func(c *config) { c.persistence = true } }

// WithConfig appends lines to the generated mosquitto.conf.
func WithConfig(lines ...string) Option {
	return func(c *config) { c.extra = append(c.extra, lines...) }
}

// Mosquitto is one broker process, restartable on the same port.
type Mosquitto struct {
	t      testing.TB
	binary string
	dir    string
	conf   string
	port   int

	mu     sync.Mutex // guards cmd and exited
	cmd    *exec.Cmd
	exited chan struct{}

	// log collects the output of every run. It has its own lock: os/exec's
	// copying goroutine writes it while start holds mu.
	log lockedBuffer
}

// StartMosquitto starts a broker on a free 127.0.0.1 port and stops it when
// the test ends.
func StartMosquitto(t testing.TB, opts ...Option) *Mosquitto {
	t.Helper()
	binary, err := findBinary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testbroker: %v (required when CI is set)", err)
		}
		t.Skipf("testbroker: %v", err)
	}
	var c config
	for _, o := range opts {
		o(&c)
	}
	m := &Mosquitto{t: t, binary: binary, dir: t.TempDir()}
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	t.Cleanup(func() { _ = m.stop(syscall.SIGTERM) })

	var lastErr error
	for range startTries {
		m.port, err = freePort()
		if err != nil {
			t.Fatalf("testbroker: %v", err)
		}
		if err := os.WriteFile(m.conf, []byte(m.config(c)), 0o600); err != nil {
			t.Fatalf("testbroker: %v", err)
		}
		if lastErr = m.start(); lastErr == nil {
			return m
		}
	}
	t.Fatalf("testbroker: %v", lastErr)
	return nil
}

func findBinary() (string, error) {
	if _, err := os.Stat(DefaultBinary); err == nil {
		return DefaultBinary, nil
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	return "", errors.New("mosquitto not found at " + DefaultBinary + " or on PATH")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("choosing a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (m *Mosquitto) config(c config) string {
	lines := []string{
		// A listener line makes Mosquitto 2 ignore -p and deny anonymous
		// clients unless allowed explicitly.
		"listener " + strconv.Itoa(m.port) + " 127.0.0.1",
		"allow_anonymous true",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"log_type notice",
		"log_type information",
		"connection_messages true",
		// A slow test subscriber must not lose messages to the default
		// per-client queue limit of 1000.
		"max_queued_messages 0",
	}
	// Run as root, Mosquitto switches to the "mosquitto" user, which cannot
	// write the test's temporary directory; name the current user instead
	// (ignored when not root).
	if u, err := user.Current(); err == nil {
		lines = append(lines, "user "+u.Username)
	}
	if c.persistence {
		lines = append(lines, "persistence true", "persistence_location "+m.dir+"/")
	} else {
		lines = append(lines, "persistence false")
	}
	lines = append(lines, c.extra...)
	return strings.Join(lines, "\n") + "\n"
}

// URL is tcp://127.0.0.1:port.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Addr is 127.0.0.1:port.
func (m *Mosquitto) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// Port is the listening port; it stays the same across Stop and Start.
func (m *Mosquitto) Port() int { return m.port }

// Start restarts a stopped broker on the same port and waits until it
// accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatalf("testbroker: %v", err)
	}
}

// Stop shuts the broker down cleanly (SIGTERM: clients are disconnected, the
// persistence database is written) and waits for the process to exit.
func (m *Mosquitto) Stop() {
	m.t.Helper()
	if err := m.stop(syscall.SIGTERM); err != nil {
		m.t.Fatalf("testbroker: %v", err)
	}
}

// Kill stops the broker abruptly (SIGKILL): nothing is written, connections
// are reset by the kernel.
func (m *Mosquitto) Kill() {
	m.t.Helper()
	if err := m.stop(syscall.SIGKILL); err != nil {
		m.t.Fatalf("testbroker: %v", err)
	}
}

// Log returns what the broker has logged so far (all runs).
func (m *Mosquitto) Log() string { return m.log.String() }

func (m *Mosquitto) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return errors.New("mosquitto already running")
	}
	cmd := exec.Command(m.binary, "-c", m.conf)
	cmd.Stdout = &m.log
	cmd.Stderr = &m.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", m.binary, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited

	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", m.Addr(), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			m.cmd, m.exited = nil, nil
			return fmt.Errorf("mosquitto exited during start-up; log:\n%s", m.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			m.cmd, m.exited = nil, nil
			return fmt.Errorf("mosquitto not accepting on %s after %v; log:\n%s", m.Addr(), readyTimeout, m.log.String())
		}
	}
}

func (m *Mosquitto) stop(sig syscall.Signal) error {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd, m.exited = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("mosquitto did not stop within %v after %v", stopTimeout, sig)
	}
}

// lockedBuffer is a bytes.Buffer safe for the copying goroutine and readers.
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
