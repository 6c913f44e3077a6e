package httpserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// The web config file is the exporter toolkit's (the format every Prometheus
// exporter reads; configs/web-config.yml is an example): tls_server_config,
// http_server_config, rate_limit and basic_auth_users with bcrypt hashes.
//
// The toolkit's own web.Serve puts basic auth in front of every route. The
// acknowledge links (/ack/...) must open on a phone that has no credentials:
// they carry their own signed, single-use tokens (agent/acklink). So the
// server uses the toolkit for what it exports (the file format and its
// validation, web.Validate, and the TLS configuration, web.ConfigToTLSConfig,
// which re-reads the certificate and key on every handshake so a renewed
// certificate needs no restart) and checks basic auth itself, per route:
// routes added with HandlePublic are exempt, every other request (unknown
// paths included) needs credentials. TLS covers every route.
//
// The file is read once, at New: a changed user list, header or rate limit
// takes effect at the next start of the agent.

// WebConfigError is returned by New when Options.WebConfigFile cannot be
// used: unreadable, not valid YAML of the toolkit's format, a password that
// is not a bcrypt hash, a certificate or key that does not load.
type WebConfigError struct {
	Path string
	Err  error
}

// quotedValue matches what YAML errors quote from the file (`...`), which can
// be a password hash or an inline key: never part of an error message.
var quotedValue = regexp.MustCompile("`[^`]*`")

func (e *WebConfigError) Error() string {
	return fmt.Sprintf("httpserver: web config %s: %s", e.Path, quotedValue.ReplaceAllString(e.Err.Error(), "`(value hidden)`"))
}
func (e *WebConfigError) Unwrap() error { return e.Err }

// webSecurity is the loaded web config.
type webSecurity struct {
	path    string
	tls     *tls.Config       // nil: plain HTTP
	http2   bool              // offer HTTP/2 over TLS
	users   map[string]string // user name -> bcrypt hash; empty: no basic auth
	headers map[string]string // added to every response
	limiter *rate.Limiter     // nil: no rate limit

	// cache remembers the outcome of checking a (user, hash, password):
	// Prometheus sends the same credentials on every scrape, and one
	// bcrypt comparison takes tens of milliseconds of the mini-PC's CPU.
	cache authCache
	// bcryptMu runs one comparison at a time, so a client guessing
	// passwords takes at most one core from the readers and the publisher.
	bcryptMu sync.Mutex
}

// loadWebConfig validates path with the toolkit and reads it the way the
// toolkit does (strict YAML, TLS 1.2 to 1.3 and HTTP/2 unless set, relative
// file names from the file's directory).
func loadWebConfig(path string) (*webSecurity, error) {
	if err := web.Validate(path); err != nil {
		return nil, &WebConfigError{Path: path, Err: err}
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, &WebConfigError{Path: path, Err: err}
	}
	c := web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(content, &c); err != nil {
		return nil, &WebConfigError{Path: path, Err: err}
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))

	w := &webSecurity{
		path:    path,
		http2:   c.HTTPConfig.HTTP2,
		users:   make(map[string]string, len(c.Users)),
		headers: c.HTTPConfig.Header,
		cache:   authCache{m: make(map[[sha256.Size]byte]bool)},
	}
	for user, hash := range c.Users {
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			// web.Validate checked this too; the file may have changed since.
			return nil, &WebConfigError{Path: path, Err: fmt.Errorf("basic_auth_users: the password of a user is not a bcrypt hash: %w", err)}
		}
		w.users[user] = string(hash)
	}
	if c.TLSConfig.IsEnabled() {
		if w.tls, err = web.ConfigToTLSConfig(&c.TLSConfig); err != nil {
			return nil, &WebConfigError{Path: path, Err: err}
		}
		if w.http2 {
			w.tls.NextProtos = []string{"h2", "http/1.1"}
		} else {
			w.tls.NextProtos = []string{"http/1.1"}
		}
	}
	if c.RateLimiterConfig.Interval < 0 || c.RateLimiterConfig.Burst < 0 {
		return nil, &WebConfigError{Path: path, Err: errors.New("rate_limit: interval and burst must not be negative")}
	}
	if c.RateLimiterConfig.Interval > 0 {
		w.limiter = rate.NewLimiter(rate.Every(c.RateLimiterConfig.Interval), c.RateLimiterConfig.Burst)
	}
	return w, nil
}

// authorized reports whether r carries the name and password of a user of
// the web config.
func (w *webSecurity) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := w.users[user]
	if !known {
		// Compare with a hash anyway, so the response time does not tell
		// which user names exist.
		hash = unknownUserHash()
	}
	key := w.cache.key(user, hash, pass)
	valid, cached := w.cache.get(key)
	if !cached {
		w.bcryptMu.Lock()
		valid = bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) == nil
		w.bcryptMu.Unlock()
		w.cache.put(key, valid)
	}
	return valid && known
}

// unknownUserHash is a bcrypt hash of a random password nobody knows, at
// the default cost, made on first use (it takes tens of milliseconds).
var unknownUserHash = sync.OnceValue(func() string {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails (Go 1.24+)
	hash, err := bcrypt.GenerateFromPassword(secret, bcrypt.DefaultCost)
	if err != nil {
		// Only for a password over 72 bytes: 32 is not.
		panic("httpserver: bcrypt of a 32-byte secret: " + err.Error())
	}
	return string(hash)
})

// authCacheLimit bounds the remembered outcomes; a client trying many
// passwords clears the cache, the next scrape pays one comparison again.
const authCacheLimit = 256

// authCache maps a digest of (user, hash, password) to the outcome. It keeps
// no password, only a SHA-256 that also covers the salted hash.
type authCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]bool
}

func (c *authCache) key(user, hash, pass string) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range []string{user, hash, pass} {
		// Length-prefixed, so ("ab","c") and ("a","bc") differ.
		_ = binary.Write(h, binary.BigEndian, uint64(len(s)))
		h.Write([]byte(s))
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *authCache) get(k [sha256.Size]byte) (valid, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	valid, ok = c.m[k]
	return valid, ok
}

func (c *authCache) put(k [sha256.Size]byte, valid bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= authCacheLimit {
		clear(c.m)
	}
	c.m[k] = valid
}

// guard is the server's outermost handler when a web config is in use: rate
// limit, configured headers, then basic auth for every route not added with
// HandlePublic.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) {
	sec := s.web
	if sec.limiter != nil && !sec.limiter.Allow() {
		http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		return
	}
	for k, v := range sec.headers {
		w.Header().Set(k, v)
	}
	if len(sec.users) > 0 && !s.isPublic(r) && !sec.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Vigil", charset="UTF-8"`)
		setNoStore(w)
		http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// isPublic reports whether r goes to a route added with HandlePublic. The
// mux decides, with the same matching it uses to serve, so "/ack/../metrics"
// (cleaned and redirected by the mux) is never public.
func (s *Server) isPublic(r *http.Request) bool {
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.public[pattern]
}
