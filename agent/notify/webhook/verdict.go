package webhook

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// maxErrorBody bounds how much of an answer is read; maxErrorDetail how
// much of it is kept in a StatusError: enough for a receiver's one-line
// reason, never a whole page.
const (
	maxErrorBody   = 4096
	maxErrorDetail = 200
)

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

// resultFor maps an answer to a verdict (notify.VerdictForStatus): 2xx
// Delivered; 408, 429 and 5xx Retry, honouring Retry-After; 3xx (never
// followed, see New) and other 4xx GiveUp. The secret is removed from the
// answer before it is cut short, so no part of it can survive into an
// error.
func resultFor(resp *http.Response, now time.Time, secret string) notify.Result {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	code := resp.StatusCode
	verdict := notify.VerdictForStatus(code)
	if verdict == notify.Delivered {
		return notify.Result{Verdict: notify.Delivered}
	}
	err := &StatusError{Code: code, Body: notify.OneLine(notify.Redact(string(body), secret), maxErrorDetail)}
	switch {
	case verdict == notify.Retry:
		return notify.Result{Verdict: notify.Retry, Err: err, RetryAfter: notify.RetryAfter(resp.Header.Get("Retry-After"), now, notify.MaxRetryAfter)}
	case code >= 300 && code <= 399:
		err.Body = "redirect not followed; set url to the receiver's final address"
	}
	return notify.Result{Verdict: notify.GiveUp, Err: err}
}
