// Package amtest runs a real Alertmanager (the Debian package's binary) for
// tests, the way agent/mqtt/testbroker runs Mosquitto.
package amtest

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Binary is Debian's package path (scripts/test.sh installs it in CI).
const Binary = "/usr/bin/prometheus-alertmanager"

// minimalConfig routes everything to a receiver with no integrations: tests
// look at the alert store, not at notifications.
const minimalConfig = `route:
  receiver: "null"
receivers:
  - name: "null"
`

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

// Start runs Alertmanager on a free loopback port and returns its base URL
// once it is ready; the test's cleanup kills and reaps it. Without the
// binary the test fails when CI is set, and is skipped otherwise.
func Start(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing: install prometheus-alertmanager (scripts/test.sh does)", Binary)
		}
		t.Skipf("%s not installed", Binary)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(conf, []byte(minimalConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	output := &lockedBuffer{}
	cmd := exec.Command(Binary,
		"--config.file="+conf,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=", // no gossip: a lone test instance
	)
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting alertmanager: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", output.String())
		}
	})

	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("alertmanager exited early (%v):\n%s", err, output.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready after 30 s:\n%s", output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
