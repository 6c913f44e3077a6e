// Package webhook posts Vigil's alarm events as JSON to any HTTP endpoint,
// signed with HMAC-SHA256 so the receiver can check that the event comes
// from this agent, unaltered and recent. The payload and the signature
// scheme are documented in README.md for people writing receivers.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// Header names of the signature scheme (README.md, "Verifying a request").
const (
	SignatureHeader = "X-Vigil-Signature" // "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)
	TimestampHeader = "X-Vigil-Timestamp" // unix seconds when the request was signed
	signaturePrefix = "sha256="
)

// minSecretBytes is the shortest secret New accepts: an HMAC key much
// shorter than its 32-byte output can be guessed offline from one signed
// request. `openssl rand -hex 32` gives a good one.
const minSecretBytes = 16

// Config of one webhook channel.
type Config struct {
	Name string
	// URL receives the POSTs. It may hold a query (some receivers take a
	// token there); it is never logged nor put in an error. It must not
	// carry user:password.
	URL string
	// SecretFile holds the HMAC key; surrounding whitespace (the trailing
	// newline) is not part of it. Read once by New. Required.
	SecretFile string
	// Timeout bounds one POST; 0 means notify.DefaultTimeout.
	Timeout time.Duration
	// Version is the agent's version, sent as User-Agent vigil/<version>;
	// "" sends vigil/dev.
	Version string
}

// ConfigError says a Config cannot work; New returns it. Key is the config
// key at fault (secret_file, url, ...), so a person knows what to fix.
type ConfigError struct {
	Channel string
	Key     string
	Reason  string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("webhook channel %q: %s: %s", e.Channel, e.Key, e.Reason)
}

// Notifier posts alarm events to one URL. Notify may be called from any
// goroutine; the Notifier holds no state between calls.
type Notifier struct {
	name      string
	url       string // never logged nor put in an error: it may hold a token
	secret    []byte
	timeout   time.Duration
	userAgent string
	client    *http.Client
	logger    *slog.Logger
	now       func() time.Time
}

// New checks c and builds the channel. The secret file is read here, so a
// missing, empty or unreadable file fails at start rather than during an
// alarm. Errors name the config key and file, never the secret.
func New(c Config, logger *slog.Logger) (*Notifier, error) {
	if logger == nil {
		logger = slog.Default()
	}
	bad := func(key, format string, a ...any) error {
		return &ConfigError{Channel: c.Name, Key: key, Reason: fmt.Sprintf(format, a...)}
	}
	if strings.TrimSpace(c.Name) == "" {
		return nil, bad("name", "is empty")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The parse error is not quoted: it would repeat the URL.
		return nil, bad("url", "must be an absolute http or https URL such as https://receiver.example/vigil")
	}
	if u.User != nil {
		return nil, bad("url", "must not carry credentials; the receiver authenticates requests by their signature")
	}
	if u.Fragment != "" {
		return nil, bad("url", "must not have a fragment")
	}
	if c.Timeout < 0 {
		return nil, bad("timeout", "is negative")
	}
	if c.SecretFile == "" {
		return nil, bad("secret_file", "is required: receivers verify every request with it")
	}
	secret, err := notify.ReadSecretFile(c.SecretFile)
	if err != nil {
		return nil, bad("secret_file", "%v", err)
	}
	if len(secret) < minSecretBytes {
		return nil, bad("secret_file", "%s holds %d bytes; use at least %d (openssl rand -hex 32)", c.SecretFile, len(secret), minSecretBytes)
	}
	version := strings.TrimSpace(c.Version)
	if version == "" {
		version = "dev"
	}
	n := &Notifier{
		name:      c.Name,
		url:       u.String(),
		secret:    []byte(secret),
		timeout:   c.Timeout,
		userAgent: "vigil/" + version,
		client: &http.Client{
			// A redirect would turn the POST into a GET (RFC 9110 15.4.2
			// lets clients do so for 301 and 302, and Go does): a 200 for
			// that GET would look delivered while the receiver never got
			// the event. Report the 3xx instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		logger: logger.With("channel", c.Name),
		now:    time.Now,
	}
	if n.timeout == 0 {
		n.timeout = notify.DefaultTimeout
	}
	if u.Scheme != "https" {
		n.logger.Warn("webhook events will cross the network unencrypted; use an https url")
	}
	n.logger.Info("webhook channel ready", "host", u.Host, "timeout", n.timeout)
	return n, nil
}

// Name is the channel's configured name.
func (n *Notifier) Name() string { return n.name }

// Payload is the JSON body: every field of alarm.Event under its json name,
// plus "priority" spelled low, medium or high (README.md shows an example).
type Payload struct {
	alarm.Event
	Priority string `json:"priority"`
}

// NewPayload wraps ev. A value or limit that JSON cannot carry (NaN, ±Inf)
// is sent as null rather than failing the whole alarm.
func NewPayload(ev alarm.Event) Payload {
	if ev.Value != nil && !isFinite(*ev.Value) {
		ev.Value = nil
	}
	if ev.Limit != nil && !isFinite(*ev.Limit) {
		ev.Limit = nil
	}
	return Payload{Event: ev, Priority: ev.PriorityName()}
}

// encodePayload is json.Marshal without HTML escaping, so an ack link reads
// "&sig=" rather than "\u0026sig=" for people looking at the payload.
func encodePayload(p Payload) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// sign returns the X-Vigil-Signature value for body sent at timestamp:
// "sha256=" and the lowercase hex HMAC-SHA256, keyed with the secret, of
// the decimal timestamp, a dot, and the exact body bytes. Signing the
// timestamp lets receivers reject replayed requests.
func (n *Notifier) sign(timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, n.secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

// Notify posts ev. The verdict follows the HTTP answer: 2xx Delivered;
// 408, 429, 5xx and network errors (timeouts included) Retry, with the
// receiver's Retry-After; any other status GiveUp. Each attempt is signed
// afresh with the current time.
func (n *Notifier) Notify(ctx context.Context, ev alarm.Event) notify.Result {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()

	if (ev.Value != nil && !isFinite(*ev.Value)) || (ev.Limit != nil && !isFinite(*ev.Limit)) {
		n.logger.Warn("event value or limit is not a finite number; sent as null", "alarm_id", ev.AlarmID, "event_id", ev.EventID)
	}
	body, err := encodePayload(NewPayload(ev))
	if err != nil {
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("webhook %s: encoding the event: %w", n.name, err)}
	}
	timestamp := strconv.FormatInt(n.now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("webhook %s: building the request failed", n.name)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.userAgent)
	req.Header.Set(TimestampHeader, timestamp)
	req.Header.Set(SignatureHeader, n.sign(timestamp, body))

	resp, err := n.client.Do(req)
	if err != nil {
		res := notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("webhook %s: POST failed: %w", n.name, notify.WithoutURL(err))}
		n.logger.Debug("webhook send failed", "alarm_id", ev.AlarmID, "event_id", ev.EventID, "phase", string(ev.Phase), "verdict", res.Verdict.String(), "err", res.Err)
		return res
	}
	defer resp.Body.Close()
	res := resultFor(resp, n.now(), string(n.secret))
	if res.Err != nil {
		res.Err = fmt.Errorf("webhook %s: %w", n.name, res.Err)
	}
	n.logger.Debug("webhook answered", "alarm_id", ev.AlarmID, "event_id", ev.EventID, "phase", string(ev.Phase),
		"status", resp.StatusCode, "verdict", res.Verdict.String(), "retry_after", res.RetryAfter)
	return res
}
