package metrics

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-monitor/vigil/drivers"
)

// TestPromtoolCheckMetrics runs Prometheus' own linter on the exposition the
// agent serves, Go and process metrics included. promtool comes with the
// Debian package "prometheus"; CI installs it, so there a missing binary is
// a failure, not a skip.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not found and CI is set: install the Debian package prometheus: %v", err)
		}
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{Devices: []Device{oximeter, cuff, {ID: "cap1", Metrics: []drivers.MetricID{drivers.RespirationRate}}}})
	populate(m)

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	exposition := rec.Body.String()
	if !strings.Contains(exposition, "vigil_spo2_ratio{") {
		t.Fatalf("exposition lacks the vital gauges:\n%s", exposition)
	}

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		t.Fatalf("promtool check metrics reported:\n%s", s)
	}
}
