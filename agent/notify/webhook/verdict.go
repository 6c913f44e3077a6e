package webhook

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// maxErrorBody bounds how much of an answer is read; maxErrorDetail how
// much of it is kept in a StatusError: enough for a receiver's one-line
// reason, never a whole page.
const (
	maxErrorBody   = 4096
	maxErrorDetail = 200
)

// maxRetryAfter caps a receiver's Retry-After so a bogus header cannot park
// a clinical alarm for hours; escalation timers stay the dispatcher's.
const maxRetryAfter = 5 * time.Minute

// StatusError is a non-2xx answer from the receiver.
type StatusError struct {
	Code int
	// Body is the start of the answer on one line, bounded, or "".
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("receiver answered HTTP %d", e.Code)
	}
	return fmt.Sprintf("receiver answered HTTP %d: %s", e.Code, e.Body)
}

// resultFor maps an answer to a verdict: 2xx Delivered; 408, 429 and 5xx
// Retry, honouring Retry-After; 3xx (never followed, see New) and other 4xx
// GiveUp, since sending the same request again cannot change them. The
// secret is removed from the answer before it is cut short, so no part of
// it can survive into an error.
func resultFor(resp *http.Response, now time.Time, secret string) notify.Result {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return notify.Result{Verdict: notify.Delivered}
	}
	text := string(body)
	if secret != "" {
		text = strings.ReplaceAll(text, secret, "[redacted]")
	}
	err := &StatusError{Code: code, Body: oneLine(text, maxErrorDetail)}
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return notify.Result{Verdict: notify.Retry, Err: err, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now)}
	case code >= 300 && code <= 399:
		err.Body = "redirect not followed; set url to the receiver's final address"
	}
	return notify.Result{Verdict: notify.GiveUp, Err: err}
}

// oneLine replaces control characters with spaces and cuts s to limit runes.
func oneLine(s string, limit int) string {
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

// retryAfter reads a Retry-After value, delay-seconds or an HTTP-date
// (RFC 9110 section 10.2.3), capped at maxRetryAfter; 0 when absent or
// unreadable, which leaves the wait to the dispatcher's backoff.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0
	}
	return min(max(d, 0), maxRetryAfter)
}
