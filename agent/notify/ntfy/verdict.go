package ntfy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// maxErrorBody bounds how much of an answer is read: enough for ntfy's JSON
// error ({"code":40101,"http":401,"error":"unauthorized",...}), never a page.
const maxErrorBody = 4096

// maxErrorDetail bounds the server's explanation kept in a StatusError.
const maxErrorDetail = 200

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

// resultFor maps an answer to a verdict (notify.VerdictForStatus): 2xx
// Delivered; 408, 429 and 5xx Retry, honouring Retry-After; 3xx (never
// followed, see New) and other 4xx GiveUp. It reads at most maxErrorBody
// bytes of the body, and removes secrets from what it keeps before cutting
// it short, so no part of a secret survives.
func resultFor(resp *http.Response, now time.Time, secrets []string) notify.Result {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	code := resp.StatusCode
	verdict := notify.VerdictForStatus(code)
	if verdict == notify.Delivered {
		return notify.Result{Verdict: notify.Delivered}
	}
	err := &StatusError{Code: code, Detail: errorDetail(body, secrets)}
	switch {
	case verdict == notify.Retry:
		return notify.Result{Verdict: notify.Retry, Err: err, RetryAfter: notify.RetryAfter(resp.Header.Get("Retry-After"), now, notify.MaxRetryAfter)}
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
	return notify.OneLine(notify.Redact(answer.Error, secrets...), maxErrorDetail)
}
