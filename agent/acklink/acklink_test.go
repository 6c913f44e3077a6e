package acklink

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

func validOptions() Options {
	return Options{
		Key:         testKey,
		BaseURL:     "https://room-1.clinic.lan:9817",
		Acknowledge: func(string, string, string, string) error { return nil },
		Current:     func(string) (alarm.Event, bool) { return alarm.Event{}, false },
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Options)
		field string
	}{
		{"no key", func(o *Options) { o.Key = nil }, "Key"},
		{"31-byte key", func(o *Options) { o.Key = testKey[:31] }, "Key"},
		{"no base URL", func(o *Options) { o.BaseURL = "" }, "BaseURL"},
		{"relative", func(o *Options) { o.BaseURL = "/ack" }, "BaseURL"},
		{"no scheme", func(o *Options) { o.BaseURL = "room-1.clinic.lan:9817" }, "BaseURL"},
		{"ftp", func(o *Options) { o.BaseURL = "ftp://room-1.clinic.lan" }, "BaseURL"},
		{"no host", func(o *Options) { o.BaseURL = "https://" }, "BaseURL"},
		{"port only", func(o *Options) { o.BaseURL = "https://:9817" }, "BaseURL"},
		{"credentials", func(o *Options) { o.BaseURL = "https://u:p@room-1.clinic.lan" }, "BaseURL"},
		{"query", func(o *Options) { o.BaseURL = "https://room-1.clinic.lan?x=1" }, "BaseURL"},
		{"empty query", func(o *Options) { o.BaseURL = "https://room-1.clinic.lan?" }, "BaseURL"},
		{"fragment", func(o *Options) { o.BaseURL = "https://room-1.clinic.lan#x" }, "BaseURL"},
		{"path", func(o *Options) { o.BaseURL = "https://room-1.clinic.lan/vigil" }, "BaseURL"},
		{"not a URL", func(o *Options) { o.BaseURL = "https://room 1\x7f" }, "BaseURL"},
		{"negative TTL", func(o *Options) { o.TTL = -time.Minute }, "TTL"},
		{"TTL too short", func(o *Options) { o.TTL = 30 * time.Second }, "TTL"},
		{"TTL too long", func(o *Options) { o.TTL = MaxTTL + time.Second }, "TTL"},
		{"no Acknowledge", func(o *Options) { o.Acknowledge = nil }, "Acknowledge"},
		{"no Current", func(o *Options) { o.Current = nil }, "Current"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions()
			tc.edit(&o)
			_, err := New(o)
			oe, ok := errors.AsType[*OptionError](err)
			if !ok {
				t.Fatalf("New: got %v, want an *OptionError", err)
			}
			if oe.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", oe.Field, tc.field, err)
			}
			if strings.Contains(err.Error(), string(testKey[:20])) {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

func TestNewDefaultsAndBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://room-1.clinic.lan:9817":  "https://room-1.clinic.lan:9817",
		"https://room-1.clinic.lan:9817/": "https://room-1.clinic.lan:9817",
		"http://192.168.1.20:9817":        "http://192.168.1.20:9817",
		"http://[fd00::20]:9817/":         "http://[fd00::20]:9817",
	} {
		o := validOptions()
		o.BaseURL = in
		l, err := New(o)
		if err != nil {
			t.Fatalf("New(%q): %v", in, err)
		}
		if l.baseURL != want {
			t.Errorf("New(%q): base %q, want %q", in, l.baseURL, want)
		}
		if l.ttl != DefaultTTL {
			t.Errorf("ttl %v, want DefaultTTL", l.ttl)
		}
	}
	// The caller's key slice may be reused; Links must not depend on it.
	o := validOptions()
	o.Key = append([]byte(nil), testKey...)
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, l, "a/b", "e1")
	clear(o.Key)
	if _, err := l.Verify(tok); err != nil {
		t.Errorf("after the caller cleared its key: %v", err)
	}
}

// mustToken issues a token for the ids, expiring after the TTL.
func mustToken(t *testing.T, l *Links, alarmID, eventID string) string {
	t.Helper()
	u := l.URL(alarm.Event{AlarmID: alarmID, EventID: eventID})
	tok, ok := strings.CutPrefix(u, l.baseURL+"/ack/")
	if !ok || tok == "" {
		t.Fatalf("URL = %q, want %s/ack/<token>", u, l.baseURL)
	}
	return tok
}

func newTestLinks(t *testing.T, clock *fakeClock, key []byte) *Links {
	t.Helper()
	o := validOptions()
	o.Key = key
	o.Now = clock.Now
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestTokenRoundTrip(t *testing.T) {
	clock := &fakeClock{now: t0}
	l := newTestLinks(t, clock, testKey)
	long := strings.Repeat("x", MaxIDBytes)
	for _, ids := range [][2]string{
		{"spo2-low-medium/oximeter-1", "1772445600-1"},
		{"technical-device-lost/nibp-1", "7"},
		{"a", "b"},
		{long, long},
		{"pulse-high-high/oxímetro-ü", "é"},
	} {
		tok := mustToken(t, l, ids[0], ids[1])
		if len(tok) > MaxTokenChars {
			t.Errorf("token of %d chars, over MaxTokenChars %d", len(tok), MaxTokenChars)
		}
		got, err := l.Verify(tok)
		if err != nil {
			t.Fatalf("Verify(%v): %v", ids, err)
		}
		if got.AlarmID != ids[0] || got.EventID != ids[1] {
			t.Errorf("ids %q %q, want %v", got.AlarmID, got.EventID, ids)
		}
		if want := t0.Add(DefaultTTL); !got.Expires.Equal(want) {
			t.Errorf("expires %v, want %v", got.Expires, want)
		}
		// Nothing but the ids, expiry and nonce is inside: the length
		// adds up exactly (no room, text, value or session).
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		if want := headerBytes + 1 + len(ids[0]) + 1 + len(ids[1]) + macBytes; len(raw) != want {
			t.Errorf("token holds %d bytes, want %d", len(raw), want)
		}
	}
	// Each call has its own nonce, so each message its own link.
	a, b := mustToken(t, l, "a/b", "1"), mustToken(t, l, "a/b", "1")
	if a == b {
		t.Error("two links for one event are equal; want a fresh nonce each")
	}
	ta, _ := l.Verify(a)
	tb, _ := l.Verify(b)
	if ta.nonce == tb.nonce {
		t.Error("two tokens share a nonce")
	}
}

func TestURLRefusesUnlinkableIDs(t *testing.T) {
	clock := &fakeClock{now: t0}
	l := newTestLinks(t, clock, testKey)
	for _, ev := range []alarm.Event{
		{AlarmID: "", EventID: "1"},
		{AlarmID: "a/b", EventID: ""},
		{AlarmID: strings.Repeat("x", MaxIDBytes+1), EventID: "1"},
		{AlarmID: "a/b", EventID: strings.Repeat("9", MaxIDBytes+1)},
		{AlarmID: "a/\xff", EventID: "1"},
	} {
		if u := l.URL(ev); u != "" {
			t.Errorf("URL(%q, %q) = %q, want no link", ev.AlarmID, ev.EventID, u)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	clock := &fakeClock{now: t0}
	l := newTestLinks(t, clock, testKey)
	tok := mustToken(t, l, "spo2-low-medium/oximeter-1", "1772445600-1")
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	enc := base64.RawURLEncoding.EncodeToString

	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return enc(b)
	}
	otherKey := newTestLinks(t, clock, []byte(strings.Repeat("k", 32)))
	// signed builds a token correctly signed with the test key around a
	// payload issue would never make.
	signed := func(p []byte) string { return enc(l.sign(append([]byte(nil), p...))) }
	payload := raw[:len(raw)-macBytes]
	withVersion := append([]byte{2}, payload[1:]...)
	withTrailing := append(append([]byte(nil), payload...), 'x')
	zeroID := append(append([]byte(nil), payload[:headerBytes]...), 0, 1, 'e')
	badUTF8 := append(append([]byte(nil), payload[:headerBytes]...), 1, 0xff, 1, 'e')
	hugeExpiry := append([]byte(nil), payload...)
	binary.BigEndian.PutUint64(hugeExpiry[1:9], 1<<63)
	longID := append(append([]byte(nil), payload[:headerBytes]...), MaxIDBytes+1)
	longID = append(longID, strings.Repeat("x", MaxIDBytes+1)...)
	longID = append(longID, 1, 'e')

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMalformed},
		{"short", "abc", ErrMalformed},
		{"huge", strings.Repeat("A", 1<<20), ErrMalformed},
		{"one over the limit", strings.Repeat("A", MaxTokenChars+1), ErrMalformed},
		{"padding", tok + "=", ErrMalformed},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(tok) + "+/", ErrMalformed},
		{"space", tok[:40] + " " + tok[41:], ErrMalformed},
		{"newline inside", tok[:40] + "\n" + tok[40:], ErrMalformed}, // the decoder alone would skip it
		{"carriage return at the end", tok + "\r", ErrMalformed},
		{"percent-encoded", tok[:40] + "%41" + tok[43:], ErrMalformed},
		// A truncated token may fail as base64 (length, trailing bits)
		// or decode and fail the signature, depending on its random nonce.
		{"truncated by one char", tok[:len(tok)-1], errRefused},
		{"truncated by four chars", tok[:len(tok)-4], errRefused},
		{"half", tok[:len(tok)/2], errRefused},
		{"only the payload", enc(payload), errRefused},
		{"extended", tok + "AAAA", ErrBadSignature},
		{"tampered version", flip(0), ErrBadSignature},
		{"tampered expiry", flip(8), ErrBadSignature},
		{"tampered nonce", flip(12), ErrBadSignature},
		{"tampered alarm id", flip(headerBytes + 3), ErrBadSignature},
		{"tampered event id", flip(len(raw) - macBytes - 1), ErrBadSignature},
		{"tampered signature", flip(len(raw) - 1), ErrBadSignature},
		{"signature replaced by zeros", enc(append(append([]byte(nil), payload...), make([]byte, macBytes)...)), ErrBadSignature},
		{"other key", mustToken(t, otherKey, "spo2-low-medium/oximeter-1", "1772445600-1"), ErrBadSignature},
		{"signed, unknown version", signed(withVersion), ErrMalformed},
		{"signed, trailing bytes", signed(withTrailing), ErrMalformed},
		{"signed, empty alarm id", signed(zeroID), ErrMalformed},
		{"signed, invalid UTF-8", signed(badUTF8), ErrMalformed},
		{"signed, absurd expiry", signed(hugeExpiry), ErrMalformed},
		{"signed, over-long id", signed(longID), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.Verify(tc.token)
			if tc.want == errRefused && (errors.Is(err, ErrMalformed) || errors.Is(err, ErrBadSignature)) {
				return
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
	// The genuine token still verifies: nothing above was a false alarm.
	if _, err := l.Verify(tok); err != nil {
		t.Fatalf("genuine token: %v", err)
	}
}

// errRefused in a test table accepts ErrMalformed or ErrBadSignature.
var errRefused = errors.New("malformed or bad signature")

func TestVerifyExpiry(t *testing.T) {
	clock := &fakeClock{now: t0}
	l := newTestLinks(t, clock, testKey)
	tok := mustToken(t, l, "spo2-low-medium/oximeter-1", "e1")

	clock.Advance(DefaultTTL - time.Second)
	if _, err := l.Verify(tok); err != nil {
		t.Fatalf("1 s before expiry: %v", err)
	}
	clock.Advance(time.Second)
	got, err := l.Verify(tok)
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v, want ErrExpired", err)
	}
	if got.AlarmID != "spo2-low-medium/oximeter-1" || got.EventID != "e1" {
		t.Errorf("an expired token's content: %+v, want its ids", got)
	}
	// A forged token does not become "expired": the signature comes first.
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)-1] ^= 1
	if _, err := l.Verify(base64.RawURLEncoding.EncodeToString(raw)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged expired token: %v, want ErrBadSignature", err)
	}
	// A clock that goes back makes it valid again: expiry is checked
	// against the clock, never remembered.
	clock.Advance(-time.Minute)
	if _, err := l.Verify(tok); err != nil {
		t.Errorf("after the clock went back: %v", err)
	}
}

func TestConfirmValue(t *testing.T) {
	clock := &fakeClock{now: t0}
	l := newTestLinks(t, clock, testKey)
	a, _ := l.Verify(mustToken(t, l, "a/b", "1"))
	b, _ := l.Verify(mustToken(t, l, "a/b", "1"))
	if !l.confirmMatches(a, l.confirmValue(a)) {
		t.Error("a token's own confirm value does not match")
	}
	for _, bad := range []string{"", l.confirmValue(b), l.confirmValue(a)[:20], l.confirmValue(a) + "A"} {
		if l.confirmMatches(a, bad) {
			t.Errorf("confirm value %q matches another token", bad)
		}
	}
	// The confirm value is not the token's own signature under another
	// name: the two keys are derived apart.
	if string(l.tokenKey) == string(l.formKey) {
		t.Error("token and form keys are equal")
	}
}

func TestUsedNoncesBounded(t *testing.T) {
	u := newUsedNonces(3)
	n := func(i byte) (b [nonceBytes]byte) { b[0] = i; return b }
	now := t0
	for i := range byte(3) {
		if !u.reserve(n(i), now.Add(time.Duration(i+1)*time.Minute), now) {
			t.Fatalf("reserve %d refused", i)
		}
		u.commit(n(i))
	}
	if u.reserve(n(1), now.Add(time.Hour), now) {
		t.Error("a used nonce was reserved again")
	}
	// Full, nothing expired: the entry nearest its expiry (0) makes room.
	if !u.reserve(n(3), now.Add(time.Hour), now) {
		t.Fatal("reserve when full refused")
	}
	if u.used(n(0)) || !u.used(n(1)) || !u.used(n(2)) || !u.used(n(3)) {
		t.Error("eviction did not drop exactly the soonest-expiring entry")
	}
	// Full again, and two minutes on 1 and 2 have expired: both go.
	u.commit(n(3))
	if !u.reserve(n(4), now.Add(time.Hour), now.Add(3*time.Minute)) {
		t.Fatal("reserve refused")
	}
	if u.len() != 2 || u.used(n(1)) || u.used(n(2)) {
		t.Errorf("expired entries kept: len %d", u.len())
	}
	// A reservation in progress is never evicted, and release frees it.
	u2 := newUsedNonces(1)
	u2.reserve(n(9), now.Add(time.Hour), now)
	u2.reserve(n(8), now.Add(time.Hour), now)
	if !u2.used(n(9)) {
		t.Error("a reservation in progress was evicted")
	}
	u2.release(n(9))
	if u2.used(n(9)) {
		t.Error("release kept the reservation")
	}
	u2.commit(n(8))
	u2.release(n(8))
	if !u2.used(n(8)) {
		t.Error("release dropped a committed nonce")
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"  RN Kim ":               "RN Kim",
		"A\nB":                    "A B",
		"A\r\nlevel=ERROR msg=x":  "A level=ERROR msg=x",
		"\u202eevil\u202c":        "evil",
		"a\x00b":                  "a b",
		"bad\xffutf8":             "badutf8",
		"tab\tand  spaces":        "tab and spaces",
		strings.Repeat("é", 50):   strings.Repeat("é", MaxNameRunes),
		strings.Repeat("ab ", 30): strings.TrimSpace(strings.Repeat("ab ", 30)[:MaxNameRunes]),
	} {
		got := cleanName(in)
		if got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > MaxNameRunes {
			t.Errorf("cleanName(%q) = %q: invalid or too long", in, got)
		}
	}
}

// fuzzKey and fuzzNow are fixed so the seed corpus in
// testdata/fuzz/FuzzParseToken holds tokens that verify (expiry 2030).
var (
	fuzzKey = []byte("acklink-fuzz-key-not-secret-0123456789ab")
	fuzzNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// FuzzParseToken: no input panics or takes unbounded work; whatever
// verifies is exactly a token this key signed (re-signing its payload
// gives the same text), with ids inside the bounds.
func FuzzParseToken(f *testing.F) {
	o := validOptions()
	o.Key = fuzzKey
	o.Now = func() time.Time { return fuzzNow }
	l, err := New(o)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := l.Verify(token)
		switch {
		case err == nil:
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrBadSignature):
			if tok != (Token{}) {
				t.Fatalf("refused token %q returned content %+v", token, tok)
			}
			return
		case errors.Is(err, ErrExpired):
		default:
			t.Fatalf("Verify(%q): untyped error %v", token, err)
		}
		for _, id := range []string{tok.AlarmID, tok.EventID} {
			if id == "" || len(id) > MaxIDBytes || !utf8.ValidString(id) {
				t.Fatalf("verified token %q has id %q", token, id)
			}
		}
		raw, decErr := base64.RawURLEncoding.DecodeString(token)
		if decErr != nil {
			t.Fatalf("verified token %q does not decode: %v", token, decErr)
		}
		if again := base64.RawURLEncoding.EncodeToString(l.sign(raw[:len(raw)-macBytes])); again != token {
			t.Fatalf("verified token %q re-signs as %q", token, again)
		}
	})
}

// TestFuzzSeedsVerify keeps the seed corpus meaningful: its "valid" and
// "expired" seeds must reach the paths behind the signature check, or the
// fuzzer would only ever explore refusals.
func TestFuzzSeedsVerify(t *testing.T) {
	o := validOptions()
	o.Key = fuzzKey
	o.Now = func() time.Time { return fuzzNow }
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]error{"valid": nil, "longest": nil, "expired": ErrExpired, "bad_signature": ErrBadSignature} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParseToken", name))
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "go test fuzz v1\nstring(")
		tok, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if !ok || err != nil {
			t.Fatalf("seed %s is not a fuzz string: %q", name, b)
		}
		if _, err := l.Verify(tok); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("seed %s: Verify = %v, want %v", name, err, want)
		}
	}
}
