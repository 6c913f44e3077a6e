package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/vigil-monitor/vigil/agent"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/drivers"
	_ "github.com/vigil-monitor/vigil/drivers/all"
	"github.com/vigil-monitor/vigil/drivers/simulator"
	"github.com/vigil-monitor/vigil/drivers/suntech"
)

// What the end-to-end test's agent is, and the values Grafana would put in
// the template variables for it.
const (
	testSite     = "clinic-a"
	testRoom     = "room-1"
	testOximeter = "oximeter-1"
	testNIBP     = "nibp-1"
)

// grafanaValues are the variables as Grafana expands them: a multi-value
// variable becomes a regular expression (a|b) for Prometheus; the global
// ones are what Grafana computes for a few minutes' range with a 1 s
// scrape (jsonData.timeInterval).
var grafanaValues = map[string]string{
	"site":            testSite,
	"room":            testRoom,
	"device":          "(" + testOximeter + "|" + testNIBP + ")",
	"__range":         "5m",
	"__rate_interval": "1m",
	"__interval":      "5s",
}

// substitute replaces $name everywhere in expr; an unknown variable is an
// error (the query would reach Prometheus with a literal $name).
func substitute(expr string) (string, error) {
	var missing []string
	out := variableRef.ReplaceAllStringFunc(expr, func(m string) string {
		v, ok := grafanaValues[m[1:]]
		if !ok {
			missing = append(missing, m)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no test value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// requireBinary finds a program the test needs: missing, it fails the test
// in CI and skips it elsewhere (common.md).
func requireBinary(t *testing.T, name string, fallbacks ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (apt-get install %s); CI requires it", name, name)
	}
	t.Skipf("%s is not installed (apt-get install %s)", name, name)
	return ""
}

// syncBuffer collects the agent's log for a failure report.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// emulatedNIBP is a SunTech module (the simulator's responder, with a 2 s
// determination instead of 30 s) answering the agent over a pty.
type emulatedNIBP struct {
	master, slave *os.File
	done          chan struct{}
	wg            sync.WaitGroup
}

func startNIBP(t *testing.T) *emulatedNIBP {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	module := &suntech.Module{Result: suntech.Result{Systolic: 118, Diastolic: 76, Mean: 90, HeartRate: 72}, Duration: 2 * time.Second}
	e := &emulatedNIBP{master: master, slave: slave, done: make(chan struct{})}
	var mu sync.Mutex
	exchange := func(in []byte) {
		mu.Lock()
		out := module.Exchange(in, time.Now())
		mu.Unlock()
		if len(out) > 0 {
			master.Write(out)
		}
	}
	e.wg.Add(2)
	go func() { // host bytes in, replies out
		defer e.wg.Done()
		buf := make([]byte, 256)
		for {
			n, err := master.Read(buf)
			if err != nil {
				return
			}
			exchange(buf[:n])
		}
	}()
	go func() { // the module announces the end of a determination unasked
		defer e.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-e.done:
				return
			case <-tick.C:
				exchange(nil)
			}
		}
	}()
	return e
}

// close ends the module; the agent must have closed the port first, so
// that the master's pending read ends (EIO once no one holds the slave).
func (e *emulatedNIBP) close() {
	close(e.done)
	e.slave.Close()
	e.master.Close()
	e.wg.Wait()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// promResponse is the Prometheus HTTP API's envelope.
type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

type promData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`  // vector
	Values [][]any           `json:"values"` // matrix
}

// errQueryFailed marks a query Prometheus refused: retrying cannot help.
var errQueryFailed = errors.New("query failed")

// promClient asks the test's Prometheus.
type promClient struct {
	base   string
	client *http.Client
}

func (c *promClient) get(path string, params url.Values) (json.RawMessage, error) {
	resp, err := c.client.Get(c.base + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r promResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%w: %s: %s", errQueryFailed, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// query runs one dashboard query as Grafana would (instant or range) and
// says whether it returned a usable value: at least one sample that is a
// number (NaN, from a quantile without observations, shows nothing).
func (c *promClient) query(expr string, instant bool) error {
	now := time.Now()
	var raw json.RawMessage
	var err error
	if instant {
		raw, err = c.get("/api/v1/query", url.Values{"query": {expr}, "time": {strconv.FormatInt(now.Unix(), 10)}})
	} else {
		raw, err = c.get("/api/v1/query_range", url.Values{
			"query": {expr},
			"start": {strconv.FormatInt(now.Add(-2*time.Minute).Unix(), 10)},
			"end":   {strconv.FormatInt(now.Unix(), 10)},
			"step":  {"1"},
		})
	}
	if err != nil {
		return err
	}
	var d promData
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	var values []string
	switch d.ResultType {
	case "vector", "matrix":
		var samples []promSample
		if err := json.Unmarshal(d.Result, &samples); err != nil {
			return err
		}
		for _, s := range samples {
			if len(s.Value) == 2 {
				values = append(values, fmt.Sprint(s.Value[1]))
			}
			for _, v := range s.Values {
				if len(v) == 2 {
					values = append(values, fmt.Sprint(v[1]))
				}
			}
		}
	case "scalar":
		var v []any
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return err
		}
		if len(v) == 2 {
			values = append(values, fmt.Sprint(v[1]))
		}
	default:
		return fmt.Errorf("%w: result type %q", errQueryFailed, d.ResultType)
	}
	if len(values) == 0 {
		return errors.New("no data")
	}
	for _, v := range values {
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return nil
		}
	}
	return fmt.Errorf("no numeric value among %d samples (NaN or Inf only)", len(values))
}

var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// labelValues runs a variable's label_values(series, label) query as
// Grafana does, through the label values API.
func (c *promClient) labelValues(query string) ([]string, error) {
	m := labelValuesQuery.FindStringSubmatch(query)
	if m == nil {
		return nil, fmt.Errorf("%w: not a label_values(series, label) query", errQueryFailed)
	}
	series, err := substitute(m[1])
	if err != nil {
		return nil, err
	}
	raw, err := c.get("/api/v1/label/"+m[2]+"/values", url.Values{
		"match[]": {series},
		"start":   {strconv.FormatInt(time.Now().Add(-5*time.Minute).Unix(), 10)},
		"end":     {strconv.FormatInt(time.Now().Unix(), 10)},
	})
	if err != nil {
		return nil, err
	}
	var values []string
	err = json.Unmarshal(raw, &values)
	return values, err
}

// startPrometheus runs the Debian package's Prometheus scraping target
// every second, with the scrape config's shape of configs/prometheus (job
// vigil, honor_labels, site and room as target labels).
func startPrometheus(t *testing.T, bin, target string) (base string, stop func()) {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: vigil
    scrape_interval: 1s
    scrape_timeout: 900ms
    honor_labels: true
    static_configs:
      - targets: ['%s']
        labels:
          site: %s
          room: %s
`, target, testSite, testRoom)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	// A file, not a pipe: no copying goroutine outlives the process.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	}
	base = "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			stop()
			t.Fatalf("prometheus exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			stop()
			t.Fatalf("prometheus not ready within 20 s:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
	return base, stop
}

// post sends a JSON body to the agent's API and wants 200.
func post(t *testing.T, client *http.Client, url, body string) {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, answer)
	}
}

// TestEveryQueryReturnsDataFromPrometheus is the dashboards' end-to-end
// test: an agent with a simulated oximeter and blood-pressure module, a
// session, an alarm and its notification; a real Prometheus scraping it
// every second; then every query of every panel, annotation and variable,
// with the variables substituted, must return data.
func TestEveryQueryReturnsDataFromPrometheus(t *testing.T) {
	promBin := requireBinary(t, "prometheus", "/usr/bin/prometheus")
	dir := t.TempDir()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	// The notification channel: a webhook receiver that accepts all.
	var notified atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		notified.Add(1)
	}))
	defer hook.Close()
	if err := os.WriteFile(filepath.Join(dir, "hook.secret"), []byte("a-long-enough-webhook-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The oximeter: the simulator playing the normal scenario.
	masimo, ok := drivers.Lookup("masimo-ascii")
	if !ok {
		t.Fatal("masimo-ascii driver not registered")
	}
	normal, ok := simulator.BuiltinScenario("normal")
	if !ok {
		t.Fatal("no normal scenario")
	}
	oximeter, err := simulator.NewDevice(simulator.Options{Driver: masimo, Scenario: normal})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := oximeter.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("simulated oximeter: %v", err)
		}
	}()
	defer func() {
		cancel()
		wg.Wait()
		oximeter.Close()
	}()
	nibp := startNIBP(t)

	// A rule that fires on the normal pulse at once, high priority, so an
	// alarm is in force and notified within seconds.
	yaml := fmt.Sprintf(`site: %[1]s
room: %[2]s
devices:
  - id: %[3]s
    driver: masimo-ascii
    port: %[4]s
  - id: %[5]s
    driver: suntech-advantage
    port: %[6]s
    nibp: {interval: 2m}
mqtt:
  url: embedded
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
store:
  path: %[7]s/vigil.db
alarms:
  clock_check: false
  audit_log: %[7]s/audit.jsonl
  rules:
    - name: pulse-watch
      metric: pulse_rate
      above: 60
      priority: high
      delay: 0s
notify:
  channels:
    - name: receiver
      type: webhook
      url: %[8]s/hook
      secret_file: %[7]s/hook.secret
  routes:
    - priorities: [high, medium, low]
      channels: [receiver]
`, testSite, testRoom, testOximeter, oximeter.Path(), testNIBP, nibp.slave.Name(), dir, hook.URL)
	cfg, err := config.Parse("dashboards test config", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}

	agentLog := &syncBuffer{}
	ready := make(chan agent.Endpoints, 1)
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- agent.Run(ctx, cfg, agent.Options{
			Logger:  slog.New(slog.NewTextHandler(agentLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Version: "test",
			OnReady: func(ep agent.Endpoints) { ready <- ep },
		})
	}()
	// Stop order: the agent (it closes its ports), then the NIBP module.
	stopAgent := func() {
		cancel()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
		nibp.close()
	}
	var ep agent.Endpoints
	select {
	case ep = <-ready:
	case err := <-agentDone:
		nibp.close()
		t.Fatalf("agent did not start: %v\n%s", err, agentLog.String())
	case <-time.After(30 * time.Second):
		stopAgent()
		t.Fatalf("agent not ready within 30 s\n%s", agentLog.String())
	}
	defer stopAgent()
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", agentLog.String())
		}
	}()

	promBase, stopProm := startPrometheus(t, promBin, strings.TrimPrefix(ep.HTTP, "http://"))
	defer stopProm()
	prom := &promClient{base: promBase, client: client}

	// Wait for Prometheus to have scraped the agent once: the alarms
	// raised below then show as increases of the counters (a counter that
	// is already at its final value at the first scrape has no rate).
	scraped := time.Now().Add(20 * time.Second)
	for prom.query(`vigil_device_up{site="`+testSite+`", room="`+testRoom+`"}`, true) != nil {
		if time.Now().After(scraped) {
			t.Fatal("Prometheus did not scrape the agent within 20 s")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Drive the agent: a session with a dose (so the next blood pressure
	// is scheduled, and the session's advisories are raised and notified),
	// a blood pressure taken now.
	post(t, client, ep.HTTP+"/api/v1/session/start", `{"by":"dashboards test"}`)
	post(t, client, ep.HTTP+"/api/v1/devices/"+testNIBP+"/commands/nibp_start", ``)
	post(t, client, ep.HTTP+"/api/v1/session/dose", `{"by":"dashboards test"}`)

	var queries []panelQuery
	var variables []struct{ dashboard, name, query string }
	for _, f := range shippedFiles(t) {
		d := decodeStrict(t, f.Name)
		queries = append(queries, queriesOf(t, f.Name, d)...)
		for _, v := range d.Templating.List {
			if v.Query == nil || v.Query.String == nil {
				t.Fatalf("%s: variable %s has no string query", f.Name, v.Name)
			}
			variables = append(variables, struct{ dashboard, name, query string }{f.Name, v.Name, *v.Query.String})
		}
	}
	if len(queries) < 40 {
		t.Fatalf("only %d queries found: the extraction is broken", len(queries))
	}

	// Every query must come good within the deadline: the data arrive
	// over the first seconds (the scrapes, the blood pressure, the
	// notification). A query Prometheus refuses fails at once.
	pending := map[string]error{}
	for _, q := range queries {
		pending[q.String()] = errors.New("not run")
	}
	deadline := time.Now().Add(45 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for _, q := range queries {
			key := q.String()
			if _, ok := pending[key]; !ok {
				continue
			}
			expr, err := substitute(q.expr)
			if err == nil {
				err = prom.query(expr, q.instant)
			}
			if err == nil {
				delete(pending, key)
				continue
			}
			if errors.Is(err, errQueryFailed) || strings.HasPrefix(err.Error(), "no test value") {
				t.Fatalf("%s\n  substituted: %s\n  %v", q, expr, err)
			}
			pending[key] = err
		}
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	keys := make([]string, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Errorf("%s\n  %v", k, pending[k])
	}
	if notified.Load() == 0 {
		t.Error("the alarm was never notified: the notification panels were not exercised")
	}

	// The variables list this agent's site, room and devices.
	want := map[string][]string{"site": {testSite}, "room": {testRoom}, "device": {testOximeter, testNIBP}}
	for _, v := range variables {
		got, err := prom.labelValues(v.query)
		if err != nil {
			t.Errorf("%s: variable %s (%s): %v", v.dashboard, v.name, v.query, err)
			continue
		}
		for _, w := range want[v.name] {
			if !slices.Contains(got, w) {
				t.Errorf("%s: variable %s (%s) = %v, want %s among them", v.dashboard, v.name, v.query, got, w)
			}
		}
	}
	if !t.Failed() {
		t.Logf("%d queries and %d variables answered with data", len(queries), len(variables))
	}
}
