package pushover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// The three Pushover calls go through net/http rather than the library's
// SendMessage, GetReceiptDetails and CancelEmergencyNotification; README.md
// ("Why net/http for the calls") lists why: no context or timeout, HTTP
// status hidden, the token leaked in receipt errors.

// APIError is a failed Pushover API call. It never holds a credential:
// transport errors are kept without the request URL (the receipt URL
// carries the token), and Pushover's messages are redacted.
type APIError struct {
	Op         string   // "send", "cancel" or "receipt"
	StatusCode int      // the HTTP status; 0 when no answer came
	Errors     []string // Pushover's "errors" array
	Err        error    // the transport or decoding cause, if any
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("pushover " + e.Op)
	if e.StatusCode != 0 {
		b.WriteString(": HTTP " + strconv.Itoa(e.StatusCode))
	} else {
		b.WriteString(": no answer")
	}
	if len(e.Errors) > 0 {
		b.WriteString(": " + strings.Join(e.Errors, "; "))
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.Err }

// maxRetryAfter caps Pushover's Retry-After. Pushover's waits are longer
// than other services' (its 429 means the monthly message limit is
// reached), so the cap is a day rather than notify.MaxRetryAfter.
const maxRetryAfter = 24 * time.Hour

// maxAnswerBytes bounds what is read of an answer: Pushover's are a few
// hundred bytes; a proxy's error page is not worth more.
const maxAnswerBytes = 64 << 10

// answer is the part every Pushover API answer shares
// (https://pushover.net/api#response), plus the fields of the message and
// receipt answers. Integers stand for booleans as Pushover sends them.
type answer struct {
	Status  int      `json:"status"`
	Request string   `json:"request"`
	Errors  []string `json:"errors"`

	Receipt string `json:"receipt"` // messages.json, emergency priority only

	// receipts/{receipt}.json (https://pushover.net/api/receipts)
	Acknowledged         int    `json:"acknowledged"`
	AcknowledgedAt       int64  `json:"acknowledged_at"`
	AcknowledgedBy       string `json:"acknowledged_by"`
	AcknowledgedByDevice string `json:"acknowledged_by_device"`
	Expired              int    `json:"expired"`
	ExpiresAt            int64  `json:"expires_at"`
}

// send posts one message. The receipt is returned only when Pushover gave a
// well-formed one.
func (n *Notifier) send(ctx context.Context, form url.Values) (string, notify.Result) {
	var a answer
	res := n.call(ctx, "send", http.MethodPost, "/messages.json", form, &a)
	if res.Verdict != notify.Delivered || !credentialPattern.MatchString(a.Receipt) {
		return "", res
	}
	return a.Receipt, res
}

// cancel stops an emergency notification's re-alerts
// (https://pushover.net/api/receipts#cancel).
func (n *Notifier) cancel(ctx context.Context, receipt string) notify.Result {
	form := url.Values{}
	form.Set("token", n.token)
	var a answer
	return n.call(ctx, "cancel", http.MethodPost, "/receipts/"+receipt+"/cancel.json", form, &a)
}

// receiptStatus reads an emergency notification's receipt
// (https://pushover.net/api/receipts).
func (n *Notifier) receiptStatus(ctx context.Context, receipt string) (answer, notify.Result) {
	form := url.Values{}
	form.Set("token", n.token)
	var a answer
	res := n.call(ctx, "receipt", http.MethodGet, "/receipts/"+receipt+".json", form, &a)
	return a, res
}

// call makes one API request within the channel's timeout and maps the
// outcome to a verdict (https://pushover.net/api#response): HTTP 200 with
// status 1 is success; 4xx means the request is wrong (bad token, unknown
// user or receipt) and repeating it cannot help; 5xx, 408, 429 (monthly
// limit reached) and no answer are transient, and Pushover asks for at
// least 5 s before a retry.
func (n *Notifier) call(ctx context.Context, op, method, path string, form url.Values, a *answer) notify.Result {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()

	endpoint := n.apiURL + path
	var body io.Reader
	if method == http.MethodGet {
		endpoint += "?" + form.Encode()
	} else {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, body)
	if err != nil {
		// The error would quote the URL, which holds the token on GET.
		return notify.Result{Verdict: notify.GiveUp, Err: &APIError{Op: op, Err: errors.New("cannot build the request (bad API URL?)")}}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")

	resp, err := n.client.Do(req)
	if err != nil {
		return notify.Result{Verdict: notify.Retry, RetryAfter: n.minRetryWait,
			Err: &APIError{Op: op, Err: notify.WithoutURL(err)}}
	}
	defer resp.Body.Close()
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	decodeErr := json.Unmarshal(raw, a)
	a.Errors = n.redactAll(a.Errors)
	apiErr := &APIError{Op: op, StatusCode: resp.StatusCode, Errors: a.Errors}

	code := resp.StatusCode
	switch notify.VerdictForStatus(code) {
	case notify.Delivered:
		if readErr != nil || decodeErr != nil {
			// Accepted or not? Unknown: sending again risks a duplicate,
			// not sending risks a lost alarm; a duplicate is the safer error.
			apiErr.Err = errors.New("unreadable answer")
			return notify.Result{Verdict: notify.Retry, RetryAfter: n.minRetryWait, Err: apiErr}
		}
		if a.Status != 1 {
			apiErr.Err = fmt.Errorf("answer status %d, want 1", a.Status)
			return notify.Result{Verdict: notify.Retry, RetryAfter: n.minRetryWait, Err: apiErr}
		}
		return notify.Result{Verdict: notify.Delivered}
	case notify.Retry:
		wait := n.minRetryWait
		if asked := notify.RetryAfter(resp.Header.Get("Retry-After"), n.now(), maxRetryAfter); asked > wait {
			wait = asked
		}
		return notify.Result{Verdict: notify.Retry, RetryAfter: wait, Err: apiErr}
	default:
		if code >= 300 && code < 400 {
			apiErr.Err = errors.New("unexpected redirect (API URL wrong?)")
		}
		return notify.Result{Verdict: notify.GiveUp, Err: apiErr}
	}
}

// redactAll removes the credentials from text Pushover sent back, in case an
// error message quotes them.
func (n *Notifier) redactAll(msgs []string) []string {
	for i, m := range msgs {
		m = strings.ReplaceAll(m, n.token, "[token]")
		msgs[i] = strings.ReplaceAll(m, n.userKey, "[user key]")
	}
	return msgs
}
