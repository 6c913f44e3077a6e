package notify

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// MaxRetryAfter is the usual cap on a service's Retry-After: a bogus header
// must not park a clinical alarm for hours, and escalation timers stay the
// dispatcher's. A channel whose service documents longer waits (Pushover)
// passes its own limit to RetryAfter.
const MaxRetryAfter = 5 * time.Minute

// VerdictForStatus maps an HTTP status to a verdict: 2xx Delivered; 408,
// 429 and 5xx Retry, since the service may take the same request later;
// everything else GiveUp (1xx, 3xx, which channels never follow, and other
// 4xx), since sending the same request again cannot change it. A channel
// whose service says more in a 2xx body (Pushover's status field) checks
// that itself.
func VerdictForStatus(code int) Verdict {
	switch {
	case code >= 200 && code <= 299:
		return Delivered
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return Retry
	}
	return GiveUp
}

// RetryAfter reads a Retry-After value, delay-seconds or an HTTP-date (RFC
// 9110 section 10.2.3), capped at limit. It gives 0 when the value is
// absent, unreadable, negative or in the past, which leaves the wait to the
// dispatcher's backoff. A delay too large to parse is a long wait, so it
// gives limit.
func RetryAfter(value string, now time.Time, limit time.Duration) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" || limit <= 0 {
		return 0
	}
	if isDigits(value) {
		secs, err := strconv.ParseUint(value, 10, 64)
		if err != nil || secs > uint64(limit/time.Second) {
			return limit
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), limit)
}

// isDigits reports whether s is delay-seconds, "1*DIGIT" (RFC 9110 section
// 10.2.3): no sign, no fraction.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// OneLine makes text from a service fit one line of an error: invalid UTF-8
// becomes U+FFFD, control characters (line breaks a log reader would take
// for a new record) become spaces, and the text is cut to limit runes with
// "…" marking the cut. Remove secrets before calling it, so a cut cannot
// leave part of one behind.
func OneLine(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == limit {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// WithoutURL returns the cause of an *http.Client error without the request
// URL net/http puts in front of it ("Post \"https://host/topic?token=...\":
// ..."): the URL may hold a token or a private topic. The cause still
// matches errors.Is (context.DeadlineExceeded and the like). Other errors
// are returned as they are.
func WithoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
