// Package alertmanager sends Vigil's alarm events to a Prometheus
// Alertmanager through its API v2, so a clinic that already routes alerts
// with Alertmanager (receivers, silences, inhibition) sees Vigil's alarms
// there too.
//
// Alertmanager has no notion of a one-shot message: an alert fires while it
// keeps being posted and resolves on its own resolve_timeout (5 min by
// default) after the last post that carried no endsAt. The Notifier therefore
// remembers every firing alarm and RunResend re-posts them every ResendEvery;
// PhaseEnd posts the same labels with endsAt = now, which resolves at once.
package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// AlertsPath is the API v2 endpoint that takes a JSON array of postable
// alerts. https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml
const AlertsPath = "/api/v2/alerts"

// DefaultResendEvery is how often firing alarms are re-posted. Alertmanager
// resolves an alert resolve_timeout after its last post (default 5m,
// https://prometheus.io/docs/alerting/latest/configuration/#configuration-file):
// one minute leaves four missed re-posts before an alarm that still lasts
// would look resolved.
const DefaultResendEvery = time.Minute

// defaultResolveTimeout is Alertmanager's default resolve_timeout. A
// ResendEvery at or above it would let firing alarms resolve between
// re-posts, so New refuses it.
const defaultResolveTimeout = 5 * time.Minute

// maxErrorBody bounds how much of an error response is kept in the Result:
// enough for Alertmanager's validation message, never a whole page.
const maxErrorBody = 512

// Config of one Alertmanager channel.
type Config struct {
	Name string
	// URL is Alertmanager's base URL, e.g. http://127.0.0.1:9093. It must
	// not carry credentials: use UsernameFile and PasswordFile.
	URL string
	// Timeout bounds one POST; 0 means notify.DefaultTimeout.
	Timeout time.Duration
	// ResendEvery is how often firing alarms are re-posted; 0 means
	// DefaultResendEvery. It must stay below Alertmanager's resolve_timeout.
	ResendEvery time.Duration
	// UsernameFile and PasswordFile, both or neither, hold HTTP basic auth
	// credentials (a trailing newline is ignored). They are read once by New.
	UsernameFile string
	PasswordFile string
	// GeneratorURL, optional, is the link Alertmanager shows as the alert's
	// source, e.g. the agent's web page.
	GeneratorURL string
}

// ConfigError says a Config cannot work; New returns it.
type ConfigError struct {
	Channel string
	Reason  string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("alertmanager channel %q: %s", e.Channel, e.Reason)
}

// StatusError is a non-2xx answer from Alertmanager.
type StatusError struct {
	Code int
	Body string // start of the response body, bounded
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("alertmanager answered HTTP %d", e.Code)
	}
	return fmt.Sprintf("alertmanager answered HTTP %d: %s", e.Code, e.Body)
}

// Notifier posts alarm events to one Alertmanager. Notify and RunResend may
// run on different goroutines.
type Notifier struct {
	name         string
	alertsURL    string
	timeout      time.Duration
	resendEvery  time.Duration
	username     string
	password     string
	generatorURL string
	client       *http.Client
	logger       *slog.Logger
	now          func() time.Time

	// sending is a lock held across a change of firing and the POST that
	// publishes it, so a re-post can never overtake the resolve of the same
	// alert (which would fire it again for resolve_timeout). It is a
	// channel so a waiting Notify still honours its ctx.
	sending chan struct{}
	firing  map[string]postableAlert // by event id; guarded by sending
}

// New checks c and builds the channel. Credentials files are read here so a
// missing or unreadable file fails at start, not during an alarm.
func New(c Config, logger *slog.Logger) (*Notifier, error) {
	if logger == nil {
		logger = slog.Default()
	}
	bad := func(format string, a ...any) error {
		return &ConfigError{Channel: c.Name, Reason: fmt.Sprintf(format, a...)}
	}
	if c.Name == "" {
		return nil, bad("name is empty")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The parse error is not quoted: it would repeat the URL.
		return nil, bad("url must be an absolute http or https URL such as http://127.0.0.1:9093")
	}
	if u.User != nil {
		return nil, bad("url must not carry credentials; use username_file and password_file")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, bad("url must not have a query or fragment")
	}
	if c.Timeout < 0 {
		return nil, bad("timeout is negative")
	}
	if c.ResendEvery < 0 {
		return nil, bad("resend_every is negative")
	}
	if c.ResendEvery >= defaultResolveTimeout {
		return nil, bad("resend_every %s must be below Alertmanager's resolve_timeout (%s), or firing alarms would resolve between re-posts", c.ResendEvery, defaultResolveTimeout)
	}
	if (c.UsernameFile == "") != (c.PasswordFile == "") {
		return nil, bad("username_file and password_file go together")
	}
	if c.GeneratorURL != "" {
		g, err := url.Parse(c.GeneratorURL)
		if err != nil || !g.IsAbs() {
			return nil, bad("generator_url must be an absolute URL")
		}
	}
	n := &Notifier{
		name:         c.Name,
		alertsURL:    strings.TrimRight(u.String(), "/") + AlertsPath,
		timeout:      c.Timeout,
		resendEvery:  c.ResendEvery,
		generatorURL: c.GeneratorURL,
		client:       &http.Client{},
		logger:       logger.With("channel", c.Name),
		now:          time.Now,
		sending:      make(chan struct{}, 1),
		firing:       make(map[string]postableAlert),
	}
	if n.timeout == 0 {
		n.timeout = notify.DefaultTimeout
	}
	if n.resendEvery == 0 {
		n.resendEvery = DefaultResendEvery
	}
	if c.UsernameFile != "" {
		if n.username, err = notify.ReadPasswordFile(c.UsernameFile); err != nil {
			return nil, bad("username_file: %v", err)
		}
		if n.password, err = notify.ReadPasswordFile(c.PasswordFile); err != nil {
			return nil, bad("password_file: %v", err)
		}
	}
	return n, nil
}

// Name is the channel's configured name.
func (n *Notifier) Name() string { return n.name }

// postableAlert is one element of the POST /api/v2/alerts body (the
// postableAlert definition of the API v2 openapi.yaml).
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     string            `json:"startsAt,omitempty"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Notify posts ev: a firing alert for PhaseStart and PhaseUpdate, a resolved
// one (endsAt = now) for PhaseEnd. An update that changes the alert's labels
// (a priority escalation) resolves the old labels in the same POST, so no
// stale alert lingers for resolve_timeout.
func (n *Notifier) Notify(ctx context.Context, ev alarm.Event) notify.Result {
	switch ev.Phase {
	case alarm.PhaseStart, alarm.PhaseUpdate, alarm.PhaseEnd:
	default:
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("alertmanager: event %q has unknown phase %q", ev.EventID, ev.Phase)}
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	select {
	case n.sending <- struct{}{}:
	case <-ctx.Done():
		return notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("alertmanager: waiting for a re-post to finish: %w", ctx.Err())}
	}
	defer func() { <-n.sending }()

	key := ev.EventID
	if key == "" {
		key = ev.AlarmID
	}
	alert := n.alertFor(ev)
	previous, known := n.firing[key]
	var batch []postableAlert
	if ev.Phase == alarm.PhaseEnd {
		// Resolve exactly the labels Alertmanager last saw as firing.
		delete(n.firing, key)
		if known {
			alert.Labels = previous.Labels
		}
		alert.EndsAt = formatTime(n.now())
		batch = []postableAlert{alert}
	} else {
		// Remembered before the POST: if it fails, the dispatcher retries
		// and RunResend re-posts it meanwhile.
		n.firing[key] = alert
		if known && !sameLabels(previous.Labels, alert.Labels) {
			previous.EndsAt = formatTime(n.now())
			batch = append(batch, previous)
		}
		batch = append(batch, alert)
	}
	return n.post(ctx, batch)
}

// RunResend re-posts every firing alarm each ResendEvery until ctx ends, so
// Alertmanager does not resolve an alarm that still lasts. Start it once per
// Notifier; it returns when ctx is done.
func (n *Notifier) RunResend(ctx context.Context) {
	ticker := time.NewTicker(n.resendEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			n.resend(ctx)
		}
	}
}

func (n *Notifier) resend(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, n.timeout)
	defer cancel()
	select {
	case n.sending <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-n.sending }()
	if len(n.firing) == 0 {
		return
	}
	batch := make([]postableAlert, 0, len(n.firing))
	for _, a := range n.firing {
		batch = append(batch, a)
	}
	if res := n.post(ctx, batch); res.Verdict != notify.Delivered {
		// The next tick tries again; resolve_timeout leaves several.
		n.logger.Warn("re-posting firing alarms to alertmanager failed", "alerts", len(batch), "verdict", res.Verdict.String(), "err", res.Err)
	}
}

// alertFor builds the firing alert of ev. Labels identify the alert in
// Alertmanager (its fingerprint), so they hold only what stays the same for
// the whole alarm; what changes goes into annotations.
func (n *Notifier) alertFor(ev alarm.Event) postableAlert {
	labels := map[string]string{"alertname": alertName(ev.AlarmID)}
	setNonEmpty(labels, "alarm_id", ev.AlarmID)
	setNonEmpty(labels, "site", ev.Site)
	setNonEmpty(labels, "room", ev.Room)
	setNonEmpty(labels, "device", ev.Device)
	setNonEmpty(labels, "metric", ev.Metric)
	setNonEmpty(labels, "priority", ev.Priority.String())
	setNonEmpty(labels, "kind", string(ev.Kind))

	annotations := map[string]string{"summary": summary(ev)}
	if ev.Value != nil {
		annotations["value"] = formatFloat(*ev.Value)
	}
	if ev.Limit != nil {
		annotations["limit"] = formatFloat(*ev.Limit)
	}
	setNonEmpty(annotations, "unit", ev.Unit)
	setNonEmpty(annotations, "condition", ev.Condition)
	setNonEmpty(annotations, "state", string(ev.State))
	setNonEmpty(annotations, "event_id", ev.EventID)
	setNonEmpty(annotations, "ack_url", ev.AckURL)

	a := postableAlert{Labels: labels, Annotations: annotations, GeneratorURL: n.generatorURL}
	if !ev.Onset.IsZero() {
		a.StartsAt = formatTime(ev.Onset)
	}
	return a
}

// summary is the event text, starting with the priority marker so the
// priority reads without colour (clinical.md 1).
func summary(ev alarm.Event) string {
	text := strings.ToValidUTF8(ev.Text, "\uFFFD")
	marker := ev.Priority.Marker()
	if marker == "" || strings.HasPrefix(text, marker) {
		return text
	}
	if text == "" {
		return marker
	}
	return marker + " " + text
}

// alertName is "Vigil" and the rule part of the alarm id in CamelCase:
// "spo2-low-medium/oximeter-1" gives "VigilSpo2LowMedium". It is stable for
// a rule, which is what Alertmanager routes and groups on.
func alertName(alarmID string) string {
	rule, _, _ := strings.Cut(alarmID, "/")
	var b strings.Builder
	b.WriteString("Vigil")
	upper := true
	for _, r := range rule {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			upper = true
			continue
		}
		if upper {
			r = unicode.ToUpper(r)
			upper = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

func setNonEmpty(m map[string]string, key, value string) {
	if value != "" && value != "unknown" {
		m[key] = strings.ToValidUTF8(value, "\uFFFD")
	}
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// post sends batch and maps the answer to a verdict: 2xx Delivered;
// 408, 429, 5xx and network errors Retry (with Retry-After when given);
// other 4xx GiveUp, since Alertmanager rejected the alert itself.
func (n *Notifier) post(ctx context.Context, batch []postableAlert) notify.Result {
	body, err := json.Marshal(batch)
	if err != nil {
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("alertmanager: encoding alerts: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.alertsURL, bytes.NewReader(body))
	if err != nil {
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("alertmanager: building request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	if n.username != "" {
		req.SetBasicAuth(n.username, n.password)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		// The URL in the error carries no credentials: New refuses them.
		return notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("alertmanager: %w", err)}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// Drain a little more so the connection can be reused; never unbounded.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	verdict := notify.VerdictForStatus(resp.StatusCode)
	if verdict == notify.Delivered {
		return notify.Result{Verdict: notify.Delivered}
	}
	statusErr := &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(strings.ToValidUTF8(string(head), "\uFFFD"))}
	if verdict == notify.Retry {
		return notify.Result{Verdict: notify.Retry, Err: statusErr, RetryAfter: notify.RetryAfter(resp.Header.Get("Retry-After"), n.now(), notify.MaxRetryAfter)}
	}
	return notify.Result{Verdict: notify.GiveUp, Err: statusErr}
}
