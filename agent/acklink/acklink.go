// Package acklink makes and serves the signed acknowledge links of Vigil's
// alarms: a nurse taps the link a notifier put in a phone message (ntfy
// action, Pushover URL, exec environment), the agent's HTTP server shows a
// confirm page, and one POST acknowledges the alarm occurrence the link was
// made for.
//
// A link is a bearer credential: whoever holds it may acknowledge that one
// occurrence until the link expires. It therefore carries only ids, an
// expiry and a nonce (no patient data), is signed with HMAC-SHA256, works
// once, and dies with its occurrence. README.md gives the token format and
// the protections against cross-site request forgery and replay.
package acklink

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// Key and lifetime limits.
const (
	// MinKeyBytes: an HMAC-SHA256 key shorter than the hash's 32-byte output
	// weakens the signature (RFC 2104 section 3: keys shorter than L bytes
	// are "strongly discouraged").
	MinKeyBytes = 32
	// DefaultTTL is how long a link works. A link is for the minutes after
	// a message reaches a phone; an unacknowledged alarm is repeated and
	// escalated (agent/dispatch), and every message carries a fresh link,
	// so a long life buys nothing. It is long enough for a nurse busy with
	// the patient to reach the phone afterwards, and short enough that a
	// leaked link (a forwarded message, a lock-screen preview, a
	// screenshot) soon stops working. The link also dies with its alarm
	// occurrence, whichever comes first.
	DefaultTTL = 30 * time.Minute
	// MinTTL: a shorter life risks links that expire while the message is
	// still on its way (phone push services deliver in seconds, sometimes
	// minutes).
	MinTTL = time.Minute
	// MaxTTL: a link that outlives a whole session (about 2 h of
	// observation plus recovery, clinical.md 3) is a standing credential,
	// not an alarm response.
	MaxTTL = 4 * time.Hour
)

// Token layout, before base64url (RFC 4648 section 5, no padding):
//
//	version(1) | expiry unix seconds, big-endian(8) | nonce(16) |
//	len(alarm id)(1) | alarm id | len(event id)(1) | event id |
//	HMAC-SHA256 of everything before it(32)
const (
	tokenVersion = 1
	nonceBytes   = 16 // 128 random bits: never repeats in practice
	macBytes     = sha256.Size
	// MaxIDBytes bounds an alarm or event id inside a token. Alarm ids are
	// "<rule>/<device>" (agent/alarm) and event ids a short counter, far
	// below it; the bound keeps links short enough for every notifier
	// (Pushover: "supplementary URLs are limited to 512 characters",
	// https://pushover.net/api#limits) and parsing bounded.
	MaxIDBytes  = 128
	headerBytes = 1 + 8 + nonceBytes
	// minTokenBytes: both ids present, one byte each at least.
	minTokenBytes = headerBytes + 1 + 1 + 1 + 1 + macBytes
	maxTokenBytes = headerBytes + 1 + MaxIDBytes + 1 + MaxIDBytes + macBytes
	// MaxTokenChars is the longest token text accepted (base64 without
	// padding: 4 characters per 3 bytes); anything longer is refused as
	// malformed before it is decoded.
	MaxTokenChars = (maxTokenBytes*8 + 5) / 6
	minTokenChars = (minTokenBytes*8 + 5) / 6
)

// Labels that derive separate keys from the configured key, so a signature
// made for one purpose (a token) can never pass for another (the confirm
// form field).
const (
	tokenKeyLabel = "vigil acklink token v1"
	formKeyLabel  = "vigil acklink form v1"
)

// Errors of Verify; compare with errors.Is. Callers must not tell a
// malformed token from a badly signed one to the person presenting it: both
// are simply "not a valid link".
var (
	// ErrMalformed: not a token of this format (bad length, alphabet or
	// structure).
	ErrMalformed = errors.New("acklink: malformed token")
	// ErrBadSignature: well formed, but not signed with this agent's key
	// (forged, tampered, truncated or from another agent).
	ErrBadSignature = errors.New("acklink: bad token signature")
	// ErrExpired: genuine, but past its expiry.
	ErrExpired = errors.New("acklink: token expired")
)

// OptionError is an Options value New refuses. Its message names the field
// and never contains the key.
type OptionError struct {
	Field  string
	Reason string
}

func (e *OptionError) Error() string {
	return "acklink: " + e.Field + " " + e.Reason
}

// Options configure New.
type Options struct {
	// Key signs the links (HMAC-SHA256); at least MinKeyBytes bytes, best
	// random. New copies it. Changing it invalidates every link out.
	Key []byte
	// BaseURL is the absolute http or https URL phones reach this agent's
	// HTTP server at, e.g. "https://room-1.clinic.lan:9817", with no path,
	// query or credentials: links are BaseURL + "/ack/" + token.
	BaseURL string
	// TTL is a link's lifetime; 0 means DefaultTTL; otherwise between
	// MinTTL and MaxTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Acknowledge applies an acknowledgement (the agent's, shared by every
	// path) of occurrence eventID of the alarm, refusing it when that is
	// no longer the alarm's present occurrence (alarm.ErrOtherOccurrence);
	// how is "phone link". Required.
	Acknowledge func(alarmID, eventID, by, how string) error
	// Current returns the alarm's present event, or false when the alarm
	// is unknown. Required: the page shows the alarm from it, and a link
	// whose occurrence (EventID) is no longer the present one is refused.
	Current func(alarmID string) (alarm.Event, bool)
	// Logger; nil means slog.Default(). The key and tokens are never logged.
	Logger *slog.Logger
}

// How is the acknowledgement channel Links passes to Options.Acknowledge.
const How = "phone link"

// Links makes and serves acknowledge links. Safe for concurrent use.
type Links struct {
	tokenKey []byte
	formKey  []byte
	baseURL  string
	ttl      time.Duration
	now      func() time.Time
	ack      func(alarmID, eventID, by, how string) error
	current  func(alarmID string) (alarm.Event, bool)
	logger   *slog.Logger
	used     *usedNonces
	csrf     *http.CrossOriginProtection
}

// New checks o and builds Links. Errors are *OptionError.
func New(o Options) (*Links, error) {
	if len(o.Key) < MinKeyBytes {
		return nil, &OptionError{Field: "Key", Reason: fmt.Sprintf("must be at least %d bytes, got %d", MinKeyBytes, len(o.Key))}
	}
	base, err := checkBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	switch {
	case o.TTL == 0:
		o.TTL = DefaultTTL
	case o.TTL < MinTTL || o.TTL > MaxTTL:
		return nil, &OptionError{Field: "TTL", Reason: fmt.Sprintf("must be between %v and %v, got %v", MinTTL, MaxTTL, o.TTL)}
	}
	if o.Acknowledge == nil {
		return nil, &OptionError{Field: "Acknowledge", Reason: "is required"}
	}
	if o.Current == nil {
		return nil, &OptionError{Field: "Current", Reason: "is required"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l := &Links{
		tokenKey: deriveKey(o.Key, tokenKeyLabel),
		formKey:  deriveKey(o.Key, formKeyLabel),
		baseURL:  base,
		ttl:      o.TTL,
		now:      o.Now,
		ack:      o.Acknowledge,
		current:  o.Current,
		logger:   o.Logger,
		used:     newUsedNonces(maxUsedNonces),
		csrf:     http.NewCrossOriginProtection(),
	}
	if u, _ := url.Parse(base); u.Scheme == "http" {
		// Allowed (a clinic LAN without certificates), but the token
		// travels in clear: anyone who can watch the network can use a
		// link before the nurse does.
		l.logger.Warn("acknowledge links use plain http; anyone watching the clinic network can use a link", "base_url", base)
	}
	return l, nil
}

func checkBaseURL(s string) (string, error) {
	bad := func(reason string) error { return &OptionError{Field: "BaseURL", Reason: reason} }
	if s == "" {
		return "", bad("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", bad("is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", bad(fmt.Sprintf("must be an http or https URL, got scheme %q", u.Scheme))
	case u.Host == "" || u.Hostname() == "":
		return "", bad("has no host")
	case u.User != nil:
		return "", bad("must not contain credentials")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", bad("must not have a query or fragment")
	case u.Path != "" && u.Path != "/":
		// The handler serves /ack/{token} at the root of the agent's
		// server; a path here would make links nothing serves.
		return "", bad(fmt.Sprintf("must not have a path (links are served at /ack/), got %q", u.Path))
	}
	return u.Scheme + "://" + u.Host, nil
}

func deriveKey(key []byte, label string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Token is a verified link's content.
type Token struct {
	AlarmID string
	EventID string
	Expires time.Time
	nonce   [nonceBytes]byte
}

// URL returns the acknowledge link for ev's occurrence: BaseURL + "/ack/" +
// a fresh token (a new nonce each call, so every message has its own
// one-use link). It returns "" (and logs why) when ev cannot have a link:
// an empty, over-long (MaxIDBytes) or non-UTF-8 alarm or event id; a
// notifier then sends its message without one.
func (l *Links) URL(ev alarm.Event) string {
	tok, err := l.issue(ev.AlarmID, ev.EventID, l.now().Add(l.ttl))
	if err != nil {
		l.logger.Warn("no acknowledge link for alarm", "alarm", ev.AlarmID, "reason", err)
		return ""
	}
	return l.baseURL + "/ack/" + tok
}

// errUnlinkableID is why URL makes no link.
var errUnlinkableID = fmt.Errorf("alarm and event ids must be non-empty UTF-8 of at most %d bytes", MaxIDBytes)

func (l *Links) issue(alarmID, eventID string, expires time.Time) (string, error) {
	for _, id := range []string{alarmID, eventID} {
		if id == "" || len(id) > MaxIDBytes || !utf8.ValidString(id) {
			return "", errUnlinkableID
		}
	}
	b := make([]byte, 0, headerBytes+2+len(alarmID)+len(eventID)+macBytes)
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(expires.Unix()))
	var nonce [nonceBytes]byte
	rand.Read(nonce[:]) // never fails (crypto/rand, Go 1.24+)
	b = append(b, nonce[:]...)
	b = append(b, byte(len(alarmID)))
	b = append(b, alarmID...)
	b = append(b, byte(len(eventID)))
	b = append(b, eventID...)
	b = l.sign(b)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sign appends the MAC of payload to it.
func (l *Links) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, l.tokenKey)
	m.Write(payload)
	return m.Sum(payload)
}

// Verify checks a token's text: format, signature (compared in constant
// time), then expiry against the clock. Errors wrap ErrMalformed,
// ErrBadSignature or ErrExpired. An expired token's content is returned
// with ErrExpired, since its signature is genuine (the page can say which
// alarm the dead link was for).
func (l *Links) Verify(token string) (Token, error) {
	if len(token) < minTokenChars || len(token) > MaxTokenChars {
		return Token{}, ErrMalformed
	}
	// The decoder skips '\r' and '\n' (encoding/base64), and a path
	// segment can carry them percent-encoded: check the alphabet first, so
	// one token has exactly one spelling.
	for i := range len(token) {
		if !isBase64URL(token[i]) {
			return Token{}, ErrMalformed
		}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil {
		return Token{}, ErrMalformed
	}
	payload, mac := raw[:len(raw)-macBytes], raw[len(raw)-macBytes:]
	want := hmac.New(sha256.New, l.tokenKey)
	want.Write(payload)
	if !hmac.Equal(mac, want.Sum(nil)) {
		return Token{}, ErrBadSignature
	}
	// Signed by this key: from here on a failure is a bug in issue, not an
	// attack, but it is still checked rather than trusted.
	t, ok := decodePayload(payload)
	if !ok {
		return Token{}, ErrMalformed
	}
	if !l.now().Before(t.Expires) {
		return t, fmt.Errorf("%w at %s", ErrExpired, t.Expires.UTC().Format(time.RFC3339))
	}
	return t, nil
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func decodePayload(p []byte) (Token, bool) {
	if len(p) < headerBytes || p[0] != tokenVersion {
		return Token{}, false
	}
	exp := binary.BigEndian.Uint64(p[1:9])
	if exp > 1<<62 { // far beyond any real expiry; keeps time.Unix sane
		return Token{}, false
	}
	var t Token
	t.Expires = time.Unix(int64(exp), 0)
	copy(t.nonce[:], p[9:headerBytes])
	rest := p[headerBytes:]
	var ids [2]string
	for i := range ids {
		if len(rest) < 1 {
			return Token{}, false
		}
		n := int(rest[0])
		if n == 0 || n > MaxIDBytes || len(rest) < 1+n || !utf8.Valid(rest[1:1+n]) {
			return Token{}, false
		}
		ids[i] = string(rest[1 : 1+n])
		rest = rest[1+n:]
	}
	if len(rest) != 0 {
		return Token{}, false
	}
	t.AlarmID, t.EventID = ids[0], ids[1]
	return t, true
}

// confirmValue is the form field the confirm page carries and the POST
// must echo: an HMAC of the token's nonce under its own key. A cross-site
// page cannot read the confirm page, so it cannot know this value even when
// it knows the link; only someone who loaded the page (or holds the key)
// can post.
func (l *Links) confirmValue(t Token) string {
	m := hmac.New(sha256.New, l.formKey)
	m.Write(t.nonce[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (l *Links) confirmMatches(t Token, got string) bool {
	return hmac.Equal([]byte(got), []byte(l.confirmValue(t)))
}

// maxUsedNonces bounds the memory of used links. Only genuine, unexpired
// links can be recorded (the signature is checked first), and a room's
// alarms produce a few links an hour, so this is never reached in use; if
// it were, evicting the soonest-expiring entry is safe because a token also
// binds its occurrence (see usedNonces).
const maxUsedNonces = 10000

// usedNonces remembers the nonces of links that acknowledged, until they
// expire, so each link acknowledges once. A nonce is reserved while its
// acknowledgement runs, so two concurrent POSTs of one link cannot both
// acknowledge.
//
// Eviction when full drops the entry nearest its expiry; a replay of that
// link could then pass this check, but it is still bound to its occurrence
// and expiry, so at worst it acknowledges again an occurrence that was
// already acknowledged through it.
type usedNonces struct {
	mu  sync.Mutex
	max int
	m   map[[nonceBytes]byte]usedNonce
}

type usedNonce struct {
	expires time.Time
	done    bool // false while the acknowledgement runs
}

func newUsedNonces(max int) *usedNonces {
	return &usedNonces{max: max, m: make(map[[nonceBytes]byte]usedNonce)}
}

// used reports whether the nonce has acknowledged or is acknowledging.
func (u *usedNonces) used(n [nonceBytes]byte) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.m[n]
	return ok
}

// reserve marks the nonce as in use; false when it already is.
func (u *usedNonces) reserve(n [nonceBytes]byte, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.m[n]; ok {
		return false
	}
	if len(u.m) >= u.max {
		u.pruneLocked(now)
	}
	u.m[n] = usedNonce{expires: expires}
	return true
}

// commit keeps a reserved nonce as used until it expires.
func (u *usedNonces) commit(n [nonceBytes]byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e, ok := u.m[n]; ok {
		e.done = true
		u.m[n] = e
	}
}

// release forgets a reservation whose acknowledgement failed, so the link
// can be tried again.
func (u *usedNonces) release(n [nonceBytes]byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e, ok := u.m[n]; ok && !e.done {
		delete(u.m, n)
	}
}

func (u *usedNonces) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}

// pruneLocked drops expired entries and, if the map is still full, the one
// nearest its expiry (never a reservation in progress).
func (u *usedNonces) pruneLocked(now time.Time) {
	for n, e := range u.m {
		if e.done && !now.Before(e.expires) {
			delete(u.m, n)
		}
	}
	if len(u.m) < u.max {
		return
	}
	var (
		oldest    [nonceBytes]byte
		oldestExp time.Time
		found     bool
	)
	for n, e := range u.m {
		if e.done && (!found || e.expires.Before(oldestExp)) {
			oldest, oldestExp, found = n, e.expires, true
		}
	}
	if found {
		delete(u.m, oldest)
	}
}
