package httpserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit is a generous deadline for things that happen within
// milliseconds; it only bounds a broken test, it asserts no timing.
const waitLimit = 10 * time.Second

// client opens a fresh connection per request, so no idle keep-alive
// connection outlives a test.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}

func testRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_test_value", Help: "A test gauge."})
	g.Set(42)
	reg.MustRegister(g)
	return reg
}

// lockedBuffer is a log sink the server's goroutines may write concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start serves s until the test ends and checks that Serve returned nil.
func start(t *testing.T, s *Server) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitLimit):
				err = errors.New("Serve did not return after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return stop
}

func newServer(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Registry == nil {
		o.Registry = testRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func TestEndpoints(t *testing.T) {
	s := newServer(t, Options{})
	start(t, s)

	r := do(t, http.MethodGet, s.URL()+"/metrics")
	if r.status != http.StatusOK || !strings.Contains(r.body, "vigil_test_value 42\n") {
		t.Fatalf("/metrics: %d\n%s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type %q, want the classic text format", ct)
	}

	// Even a scraper that offers OpenMetrics gets the classic text format.
	req, err := http.NewRequest(http.MethodGet, s.URL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics with OpenMetrics offered: Content-Type %q", ct)
	}

	r = do(t, http.MethodGet, s.URL()+"/healthz")
	if r.status != http.StatusOK || r.body != "ok\n" {
		t.Errorf("/healthz: %d %q", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("/healthz Cache-Control %q", cc)
	}
	r = do(t, http.MethodGet, s.URL()+"/readyz")
	if r.status != http.StatusOK || r.body != "ready\n" {
		t.Errorf("/readyz with nil Ready: %d %q", r.status, r.body)
	}

	r = do(t, http.MethodGet, s.URL()+"/")
	if r.status != http.StatusOK {
		t.Fatalf("/: %d", r.status)
	}
	for _, link := range []string{`<a href="/metrics">`, `<a href="/healthz">`, `<a href="/readyz">`} {
		if !strings.Contains(r.body, link) {
			t.Errorf("index lacks %s:\n%s", link, r.body)
		}
	}

	if r := do(t, http.MethodGet, s.URL()+"/no-such-page"); r.status != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", r.status)
	}
	if r := do(t, http.MethodPost, s.URL()+"/healthz"); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d, want 405", r.status)
	}
	if r := do(t, http.MethodHead, s.URL()+"/healthz"); r.status != http.StatusOK {
		t.Errorf("HEAD /healthz: %d, want 200", r.status)
	}
}

func TestReadyzFollowsReady(t *testing.T) {
	var reason atomic.Pointer[string]
	notReady := "mqtt: not connected"
	reason.Store(&notReady)
	s := newServer(t, Options{Ready: func() error {
		if r := reason.Load(); r != nil {
			return errors.New(*r)
		}
		return nil
	}})
	start(t, s)

	r := do(t, http.MethodGet, s.URL()+"/readyz")
	if r.status != http.StatusServiceUnavailable || r.body != "not ready: mqtt: not connected\n" {
		t.Fatalf("not ready: %d %q", r.status, r.body)
	}
	// Liveness does not depend on readiness.
	if r := do(t, http.MethodGet, s.URL()+"/healthz"); r.status != http.StatusOK {
		t.Fatalf("/healthz while not ready: %d", r.status)
	}
	reason.Store(nil)
	if r := do(t, http.MethodGet, s.URL()+"/readyz"); r.status != http.StatusOK || r.body != "ready\n" {
		t.Fatalf("ready: %d %q", r.status, r.body)
	}
	other := "no device connected"
	reason.Store(&other)
	if r := do(t, http.MethodGet, s.URL()+"/readyz"); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, other) {
		t.Fatalf("not ready again: %d %q", r.status, r.body)
	}
}

func TestAddrHasRealPort(t *testing.T) {
	s := newServer(t, Options{})
	defer s.Close()
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("Addr %q", s.Addr())
	}
	if s.URL() != "http://127.0.0.1:"+port {
		t.Fatalf("URL %q", s.URL())
	}
}

func TestNewErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	_, err = New(Options{Listen: taken.Addr().String(), Registry: testRegistry()})
	var le *ListenError
	if !errors.As(err, &le) || le.Addr != taken.Addr().String() {
		t.Fatalf("address in use: %v, want *ListenError", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("address in use: %v does not wrap EADDRINUSE", err)
	}

	if _, err := New(Options{Listen: "127.0.0.1:notaport", Registry: testRegistry()}); !errors.As(err, &le) {
		t.Fatalf("bad address: %v, want *ListenError", err)
	}
	if _, err := New(Options{Registry: testRegistry()}); !errors.Is(err, ErrNoListenAddress) {
		t.Fatalf("empty Listen: %v", err)
	}
	if _, err := New(Options{Listen: "127.0.0.1:0"}); !errors.Is(err, ErrNoRegistry) {
		t.Fatalf("nil Registry: %v", err)
	}
}

func TestHandleAddsRoutes(t *testing.T) {
	s := newServer(t, Options{})
	s.Handle("GET /api/status", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "status")
	}))
	s.Handle("GET /api/devices/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "device ", r.PathValue("id"))
	}))
	start(t, s)
	if r := do(t, http.MethodGet, s.URL()+"/api/status"); r.status != http.StatusOK || r.body != "status" {
		t.Fatalf("/api/status: %d %q", r.status, r.body)
	}
	if r := do(t, http.MethodGet, s.URL()+"/api/devices/ox1"); r.body != "device ox1" {
		t.Fatalf("/api/devices/ox1: %d %q", r.status, r.body)
	}
	r := do(t, http.MethodGet, s.URL()+"/")
	if !strings.Contains(r.body, `<a href="/api/status">GET /api/status</a>`) || !strings.Contains(r.body, "<li>GET /api/devices/{id}</li>") {
		t.Fatalf("index lacks added routes:\n%s", r.body)
	}
}

// A collector that fails must not take the vital signs down with it.
func TestMetricsServesDespiteFailingCollector(t *testing.T) {
	reg := testRegistry()
	reg.MustRegister(failingCollector{prometheus.NewDesc("vigil_broken", "A collector that fails.", nil, nil)})
	logs := &lockedBuffer{}
	s := newServer(t, Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	start(t, s)

	r := do(t, http.MethodGet, s.URL()+"/metrics")
	if r.status != http.StatusOK || !strings.Contains(r.body, "vigil_test_value 42") {
		t.Fatalf("/metrics with a failing collector: %d\n%s", r.status, r.body)
	}
	if !strings.Contains(logs.String(), "metrics exposition") || !strings.Contains(logs.String(), "sensor exploded") {
		t.Fatalf("exposition error not logged:\n%s", logs)
	}
}

type failingCollector struct{ desc *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("sensor exploded"))
}

// blockingHandler answers only when released, to hold a request in flight.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (h *blockingHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.entered <- struct{}{}
	<-h.release
	fmt.Fprint(w, "finished")
}

func TestGracefulStopFinishesInFlightRequests(t *testing.T) {
	s := newServer(t, Options{})
	slow := newBlockingHandler()
	s.Handle("GET /slow", slow)
	stop := start(t, s)

	got := make(chan response, 1)
	go func() {
		resp, err := client.Get(s.URL() + "/slow")
		if err != nil {
			got <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- response{status: resp.StatusCode, body: string(b)}
	}()
	<-slow.entered

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()

	// The listener closes at once: new connections are refused while the
	// in-flight request is still running.
	deadline := time.Now().Add(waitLimit)
	for {
		conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after the context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	default:
	}

	close(slow.release)
	r := <-got
	if r.status != http.StatusOK || r.body != "finished" {
		t.Fatalf("in-flight request: %d %q", r.status, r.body)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestShutdownIsBounded(t *testing.T) {
	s := newServer(t, Options{ShutdownTimeout: 50 * time.Millisecond})
	stuck := newBlockingHandler()
	s.Handle("GET /stuck", stuck)
	stop := start(t, s)
	defer close(stuck.release) // lets the handler goroutine end before goleak looks

	clientErr := make(chan error, 1)
	go func() {
		resp, err := client.Get(s.URL() + "/stuck")
		if err == nil {
			resp.Body.Close()
		}
		clientErr <- err
	}()
	<-stuck.entered

	if err := stop(); err != nil {
		t.Fatalf("Serve after forced close: %v, want nil", err)
	}
	if err := <-clientErr; err == nil {
		t.Fatal("request stuck past the shutdown timeout got a response; want its connection closed")
	}
}

func TestServeTwiceAndClose(t *testing.T) {
	s := newServer(t, Options{})
	stop := start(t, s)
	// Once a request succeeds, the first Serve is certainly running.
	if r := do(t, http.MethodGet, s.URL()+"/healthz"); r.status != http.StatusOK {
		t.Fatalf("/healthz: %d", r.status)
	}
	if err := s.Serve(context.Background()); !errors.Is(err, ErrServed) {
		t.Fatalf("second Serve: %v, want ErrServed", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Close frees the port of a server that is never served.
	unused := newServer(t, Options{})
	addr := unused.Addr()
	if err := unused.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not released by Close: %v", err)
	}
	again.Close()
	if err := unused.Serve(context.Background()); !errors.Is(err, ErrServed) {
		t.Fatalf("Serve after Close: %v, want ErrServed", err)
	}
}
