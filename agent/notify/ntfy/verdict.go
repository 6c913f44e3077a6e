package ntfy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// maxErrorBody bounds how much of an answer is read: enough for ntfy's JSON
// error ({"code":40101,"http":401,"error":"unauthorized",...}), never a page.
const maxErrorBody = 4096

// maxErrorDetail bounds the server's explanation kept in a StatusError.
const maxErrorDetail = 200

// maxRetryAfter caps a server's Retry-After so a bogus header cannot park a
// clinical alarm for hours; escalation timers stay the dispatcher's.
const maxRetryAfter = 5 * time.Minute

// StatusError is a non-2xx answer from the ntfy server.
type StatusError struct {
	Code int
	// Detail is ntfy's own error text ("unauthorized", "limit reached"),
	// bounded, or "" when the answer carried none.
	Detail string
}

func (e *StatusError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("server answered HTTP %d", e.Code)
	}
	return fmt.Sprintf("server answered HTTP %d: %s", e.Code, e.Detail)
}

// resultFor maps an answer to a verdict: 2xx Delivered; 408, 429 and 5xx
// Retry, honouring Retry-After; 3xx (never followed, see New) and other 4xx
// GiveUp, since sending the same request again cannot change them. It reads
// at most maxErrorBody bytes of the body, and removes secrets from what it
// keeps before cutting it short, so no part of a secret survives.
func resultFor(resp *http.Response, now time.Time, secrets []string) notify.Result {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return notify.Result{Verdict: notify.Delivered}
	}
	err := &StatusError{Code: code, Detail: errorDetail(body, secrets)}
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return notify.Result{Verdict: notify.Retry, Err: err, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now)}
	case code >= 300 && code <= 399:
		err.Detail = "redirect not followed; set url to the topic's final address"
	}
	return notify.Result{Verdict: notify.GiveUp, Err: err}
}

// errorDetail pulls the "error" field out of ntfy's JSON error answer
// (https://docs.ntfy.sh/publish/ shows the shape), bounded to one short
// line. Anything else (a proxy's HTML page) gives "".
func errorDetail(body []byte, secrets []string) string {
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &answer) != nil {
		return ""
	}
	return oneLine(scrub(answer.Error, secrets), maxErrorDetail)
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
