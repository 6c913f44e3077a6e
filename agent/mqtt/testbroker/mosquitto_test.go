package testbroker

import (
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRestartKeepsPort(t *testing.T) {
	m := StartMosquitto(t, WithPersistence())
	if !strings.HasPrefix(m.URL(), "tcp://127.0.0.1:") || m.Port() == 0 {
		t.Fatalf("URL %q port %d", m.URL(), m.Port())
	}
	dial := func() error {
		c, err := net.DialTimeout("tcp", m.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("not listening: %v", err)
	}
	port := m.Port()
	m.Stop()
	if err := dial(); err == nil {
		t.Fatal("still listening after Stop")
	}
	m.Start()
	if m.Port() != port {
		t.Fatalf("port %d after restart, want %d", m.Port(), port)
	}
	if err := dial(); err != nil {
		t.Fatalf("not listening after Start: %v", err)
	}
	m.Kill()
	m.Start()
	if !strings.Contains(m.Log(), "mosquitto version") {
		t.Errorf("log does not show the broker starting:\n%s", m.Log())
	}
}
