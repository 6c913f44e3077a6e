// Package httpserver is the agent's HTTP listener: Prometheus metrics, the
// liveness and readiness probes systemd, a load balancer or a person can
// check, and the routes later parts of the agent add (the API).
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the http.Server. Every client is a scraper, a probe or a
// dashboard on the clinic network; none needs a slow upload, and a client that
// trickles bytes must not hold a connection (slowloris).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	// writeTimeout bounds a response, /metrics included; scrapes of this
	// agent take milliseconds, and Prometheus' default scrape timeout is 10 s.
	writeTimeout   = 30 * time.Second
	idleTimeout    = 60 * time.Second
	maxHeaderBytes = 64 << 10
	// DefaultShutdownTimeout bounds the graceful stop: in-flight requests get
	// this long to finish before their connections are closed.
	DefaultShutdownTimeout = 5 * time.Second
	// metricsMaxInFlight caps concurrent scrapes so a misconfigured scraper
	// fleet cannot pile up gathering work on the mini-PC.
	metricsMaxInFlight = 8
)

// Errors New and Serve return; compare with errors.Is.
var (
	ErrNoListenAddress = errors.New("httpserver: no listen address")
	ErrNoRegistry      = errors.New("httpserver: no metrics registry")
	// ErrServed is returned by a second Serve, and by Serve after Close.
	ErrServed = errors.New("httpserver: server already served or closed")
)

// ListenError is returned by New when the address cannot be bound. It wraps
// the system error, so errors.Is(err, syscall.EADDRINUSE) works.
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("httpserver: listen on %s: %v", e.Addr, e.Err)
}
func (e *ListenError) Unwrap() error { return e.Err }

// Options configure New.
type Options struct {
	// Listen is host:port; ":0" or "127.0.0.1:0" picks a free port (see Addr).
	Listen string
	// Registry is served on /metrics.
	Registry *prometheus.Registry
	// Ready reports whether the agent is ready (a nil error); a non-nil
	// error's text is served by /readyz, so it must not contain secrets.
	// nil means always ready.
	Ready func() error
	// ShutdownTimeout bounds the graceful stop; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives server and exposition errors; nil means slog.Default().
	Logger *slog.Logger
	// WebConfigFile is the path of an exporter-toolkit web config (TLS,
	// basic auth with bcrypt hashes, headers, rate limit; see
	// configs/web-config.yml). New reads and validates it, so a broken file
	// fails at start with a *WebConfigError. "" serves plain HTTP without
	// authentication. With basic_auth_users, every route needs credentials
	// except those added with HandlePublic.
	WebConfigFile string
}

// Server is the bound listener and its routes.
type Server struct {
	listener        net.Listener
	mux             *http.ServeMux
	http            *http.Server
	logger          *slog.Logger
	shutdownTimeout time.Duration
	web             *webSecurity // nil without Options.WebConfigFile

	mu       sync.Mutex
	patterns []string        // for the index page
	public   map[string]bool // patterns added with HandlePublic
	served   bool            // Serve or Close was called
}

// New binds the listener at once, so a taken port fails at start-up with a
// *ListenError and ":0" has a real port before Serve, and installs /metrics,
// /healthz, /readyz and the index page.
func New(o Options) (*Server, error) {
	if o.Listen == "" {
		// net.Listen would take "" as every interface on a random port:
		// never what a configuration meant.
		return nil, ErrNoListenAddress
	}
	if o.Registry == nil {
		return nil, ErrNoRegistry
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	ready := o.Ready
	if ready == nil {
		ready = func() error { return nil }
	}

	var sec *webSecurity
	if o.WebConfigFile != "" {
		var err error
		if sec, err = loadWebConfig(o.WebConfigFile); err != nil {
			return nil, err
		}
	}

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, &ListenError{Addr: o.Listen, Err: err}
	}

	s := &Server{
		listener:        ln,
		mux:             http.NewServeMux(),
		logger:          logger,
		shutdownTimeout: o.ShutdownTimeout,
		web:             sec,
		public:          make(map[string]bool),
	}
	var handler http.Handler = s.mux
	if sec != nil {
		handler = http.HandlerFunc(s.guard)
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if sec != nil && sec.tls != nil {
		s.http.TLSConfig = sec.tls
		if !sec.http2 {
			// A non-nil empty map keeps ServeTLS from adding HTTP/2.
			s.http.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}
	}

	s.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{
		ErrorLog: promErrorLog{logger},
		// One failing collector (the process collector on an unusual
		// /proc, say) must not blank every vital sign: serve what was
		// gathered and log the error.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: metricsMaxInFlight,
		// The classic text format only. OpenMetrics adds nothing Vigil
		// uses (no exemplars, no created timestamps needed), and one
		// format means what Prometheus reads is exactly what promtool
		// check metrics and the tests validate.
		EnableOpenMetrics: false,
	}))
	s.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Liveness: the process runs and serves HTTP. Nothing else is
		// checked, so a restart is never triggered by a device problem.
		writeText(w, http.StatusOK, "ok\n")
	}))
	s.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	}))
	// "/{$}" matches only the root; every other unknown path is a 404.
	s.mux.Handle("GET /{$}", http.HandlerFunc(s.index))
	return s, nil
}

// Addr is the bound host:port, with the real port when Listen asked for 0.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// URL is the server's base URL: https://host:port when the web config turns
// TLS on, else http://host:port.
func (s *Server) URL() string {
	if s.TLS() {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// TLS reports whether the server serves HTTPS (a web config with
// tls_server_config).
func (s *Server) TLS() bool { return s.web != nil && s.web.tls != nil }

// Handle adds a route, with http.ServeMux pattern syntax ("GET /api/x").
// With basic auth in the web config, the route needs credentials.
// Call it before Serve. Like http.ServeMux it panics on a pattern that
// conflicts with an existing one: a programming error any test catches.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.handle(pattern, h, false)
}

// HandlePublic adds a route that needs no credentials even when the web
// config has basic_auth_users; TLS still applies. It is for the acknowledge
// links ("/ack/"), which carry their own signed, single-use tokens and must
// open on a phone that has no password. Anything else belongs behind Handle.
func (s *Server) HandlePublic(pattern string, h http.Handler) {
	s.handle(pattern, h, true)
}

func (s *Server) handle(pattern string, h http.Handler, public bool) {
	s.mux.Handle(pattern, h)
	s.mu.Lock()
	s.patterns = append(s.patterns, pattern)
	if public {
		s.public[pattern] = true
	}
	s.mu.Unlock()
}

// Serve serves until ctx ends, then stops gracefully: the listener closes,
// in-flight requests get the shutdown timeout to finish, and connections
// still open after it are closed. It returns nil after a stop caused by ctx
// (forcing slow connections closed is logged, not an error: the agent is
// stopping either way) and the error when serving itself fails.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return ErrServed
	}
	s.served = true
	s.mu.Unlock()

	serveErr := make(chan error, 1)
	if s.TLS() {
		// The certificate comes from TLSConfig (GetCertificate, which
		// re-reads the files on every handshake), not from these names.
		go func() { serveErr <- s.http.ServeTLS(s.listener, "", "") }()
	} else {
		go func() { serveErr <- s.http.Serve(s.listener) }()
	}
	s.logStart()

	select {
	case err := <-serveErr:
		// Serve only returns early on a listener failure.
		return fmt.Errorf("httpserver: serve on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		s.logger.Warn("http server: requests still running at shutdown deadline; closing their connections",
			"timeout", s.shutdownTimeout, "err", err)
		_ = s.http.Close()
	}
	// http.Server.Serve returns ErrServerClosed once Shutdown or Close
	// began; wait for it so the serving goroutine is gone when we return.
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("httpserver: serve on %s: %w", s.Addr(), err)
	}
	s.logger.Info("http server stopped", "addr", s.Addr())
	return nil
}

// Close releases the listener of a server whose Serve will never be called
// (start-up failed after New). After Serve has started, end its context
// instead.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served {
		return nil
	}
	s.served = true
	return s.listener.Close()
}

// logStart says how the server is reached: the web config's path, never its
// content (it holds password hashes and may hold a key).
func (s *Server) logStart() {
	if s.web == nil {
		s.logger.Info("http server listening", "addr", s.Addr(), "tls", false, "basic_auth", false)
		return
	}
	auth := len(s.web.users) > 0
	s.logger.Info("http server listening", "addr", s.Addr(), "tls", s.TLS(), "basic_auth", auth,
		"web_config_file", s.web.path)
	if auth && !s.TLS() {
		s.logger.Warn("http basic auth without TLS: passwords cross the network in clear; add tls_server_config to the web config",
			"web_config_file", s.web.path)
	}
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	patterns := slices.Clone(s.patterns)
	s.mu.Unlock()
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><title>Vigil agent</title></head><body>\n<h1>Vigil agent</h1>\n<ul>\n")
	for _, p := range patterns {
		// Patterns may name a method ("GET /metrics"); the link is the path.
		path := p
		if _, after, ok := strings.Cut(p, " "); ok {
			path = strings.TrimSpace(after)
		}
		if strings.Contains(path, "{") {
			// A wildcard route is not a page one can open; list it unlinked.
			fmt.Fprintf(&b, "<li>%s</li>\n", html.EscapeString(p))
			continue
		}
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", html.EscapeString(path), html.EscapeString(p))
	}
	b.WriteString("</ul>\n</body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	setNoStore(w)
	_, _ = io.WriteString(w, b.String())
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	setNoStore(w)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

// setNoStore keeps probes and the index from being cached by a proxy: a
// cached "ready" is a lie.
func setNoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// promErrorLog routes promhttp's exposition errors to slog.
type promErrorLog struct{ logger *slog.Logger }

func (l promErrorLog) Println(v ...any) {
	l.logger.Error("metrics exposition", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
