// Package pushover sends Vigil's alarm events to phones through Pushover
// (https://pushover.net/api). High-priority alarms go out as emergency
// notifications that repeat on the phone until someone acknowledges them;
// the Notifier polls their receipts and reports acknowledgements back, and
// cancels them when the alarm ends.
package pushover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gp "github.com/gregdel/pushover"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// Pushover's documented limits and rules (https://pushover.net/api). The
// length limits are counted in characters (runes), not bytes.
const (
	// MaxTitleRunes: "a title, up to 250 characters" (https://pushover.net/api#limits).
	MaxTitleRunes = gp.MessageTitleMaxLength
	// MaxMessageRunes: "a message, up to 1024 characters" (https://pushover.net/api#limits).
	MaxMessageRunes = gp.MessageMaxLength
	// MaxURLRunes: "a supplementary URL, up to 512 characters" (https://pushover.net/api#limits).
	MaxURLRunes = gp.MessageURLMaxLength
	// MaxURLTitleRunes: "a title for the URL, up to 100 characters" (https://pushover.net/api#limits).
	MaxURLTitleRunes = gp.MessageURLTitleMaxLength

	// MinRetry: emergency "retry" must be at least 30 seconds
	// (https://pushover.net/api#priority).
	MinRetry = 30 * time.Second
	// MaxExpire: emergency "expire" may be at most 10800 seconds (3 hours)
	// (https://pushover.net/api#priority).
	MaxExpire = 10800 * time.Second
	// DefaultRetry: how often the phone re-alerts an unacknowledged emergency.
	DefaultRetry = 60 * time.Second
	// DefaultExpire: how long the phone keeps re-alerting. One hour covers a
	// dosing session; the local annunciator stays primary (clinical.md 1).
	DefaultExpire = 3600 * time.Second

	// ReceiptPollInterval: receipts may be polled "no faster than once every
	// 5 seconds" (https://pushover.net/api/receipts). It is also the shortest
	// wait between retries after a 5xx or a timeout
	// (https://pushover.net/api#friendly).
	ReceiptPollInterval = 5 * time.Second

	// MaxOpenReceipts bounds the emergency receipts kept for polling and
	// cancelling. A clinic room has a handful of alarm rules; reaching this
	// means alarms are not being ended, and the oldest receipt is dropped
	// (it still stops by itself at its expire time).
	MaxOpenReceipts = 128

	// DefaultAPIURL is Pushover's API base (https://pushover.net/api).
	DefaultAPIURL = "https://api.pushover.net/1"

	ackURLTitle = "Acknowledge"
)

// Pushover priorities (https://pushover.net/api#priority).
const (
	priorityNormal    = gp.PriorityNormal    // 0: sound and vibration per the user's settings
	priorityHigh      = gp.PriorityHigh      // 1: bypasses the user's quiet hours
	priorityEmergency = gp.PriorityEmergency // 2: repeats until acknowledged
)

// credentialPattern: application tokens, user keys and receipts are "30
// characters, case-sensitive [A-Za-z0-9]" (https://pushover.net/api#identifiers).
var credentialPattern = regexp.MustCompile(`^[A-Za-z0-9]{30}$`)

// devicePattern: device names are "up to 25 characters [A-Za-z0-9_-]"
// (https://pushover.net/api#identifiers); several may be comma-separated.
var devicePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,25}$`)

// soundPattern: Pushover's sound names (built-in and custom) are short
// lowercase words; anything else is a config typo Pushover would reject with
// a 400 at alarm time, so it is refused at start.
var soundPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Config is one Pushover channel.
type Config struct {
	Name        string        // the channel's configured name; default "pushover"
	TokenFile   string        // file holding the application token
	UserKeyFile string        // file holding the user (or group) key
	Device      string        // optional: only these devices (comma-separated names)
	Timeout     time.Duration // per HTTP call; default notify.DefaultTimeout
	// Emergency (high priority) re-alert interval and duration: Retry >= 30s
	// (default 60s), Expire <= 10800s (default 3600s).
	Retry, Expire time.Duration
	Sound         string // optional Pushover sound name for every message
}

// ConfigError is a configuration problem found by New. Key names the config
// key at fault; the message never contains a secret's content.
type ConfigError struct {
	Channel string
	Key     string // token_file, user_key_file, device, sound, timeout, retry, expire
	Reason  string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("pushover channel %q: %s: %s", e.Channel, e.Key, e.Reason)
}

// ErrAlreadyPolling is returned by a second concurrent RunAcknowledgements.
var ErrAlreadyPolling = errors.New("pushover: acknowledgements already being polled")

// Notifier sends alarm events to one Pushover user or group.
type Notifier struct {
	name    string
	token   string // secret: never logged, never in an error
	userKey string // secret: never logged, never in an error
	device  string
	sound   string
	timeout time.Duration
	retry   time.Duration
	expire  time.Duration

	apiURL       string
	pollInterval time.Duration
	minRetryWait time.Duration // after a 5xx or no answer (https://pushover.net/api#friendly)
	client       *http.Client
	now          func() time.Time
	logger       *slog.Logger

	receipts *receiptStore
	polling  atomic.Bool
}

var (
	_ notify.Notifier     = (*Notifier)(nil)
	_ notify.Acknowledger = (*Notifier)(nil)
)

// New checks c, reads the token and user key files, and builds the
// Notifier. A nil logger discards logs.
func New(c Config, logger *slog.Logger) (*Notifier, error) {
	return newNotifier(c, logger, DefaultAPIURL, ReceiptPollInterval)
}

// newNotifier is New with the API base and the receipt poll interval open,
// so tests can point it at an httptest server and poll faster than
// Pushover allows its real API to be polled.
func newNotifier(c Config, logger *slog.Logger, apiURL string, pollInterval time.Duration) (*Notifier, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name := c.Name
	if name == "" {
		name = "pushover"
	}
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Channel: name, Key: key, Reason: fmt.Sprintf(format, args...)}
	}

	token, err := readCredential(c.TokenFile)
	if err != nil {
		return nil, bad("token_file", "%v", err)
	}
	userKey, err := readCredential(c.UserKeyFile)
	if err != nil {
		return nil, bad("user_key_file", "%v", err)
	}
	if c.Device != "" {
		for _, d := range strings.Split(c.Device, ",") {
			if !devicePattern.MatchString(d) {
				return nil, bad("device", "%q is not a Pushover device name (1-25 characters [A-Za-z0-9_-], comma-separated)", d)
			}
		}
	}
	if c.Sound != "" && !soundPattern.MatchString(c.Sound) {
		return nil, bad("sound", "%q is not a Pushover sound name", c.Sound)
	}
	timeout := c.Timeout
	switch {
	case timeout < 0:
		return nil, bad("timeout", "must not be negative (got %s)", timeout)
	case timeout == 0:
		timeout = notify.DefaultTimeout
	}
	retry := c.Retry
	switch {
	case retry == 0:
		retry = DefaultRetry
	case retry < MinRetry:
		return nil, bad("retry", "must be at least %s (got %s; https://pushover.net/api#priority)", MinRetry, retry)
	}
	expire := c.Expire
	switch {
	case expire == 0:
		expire = DefaultExpire
	case expire < 0:
		return nil, bad("expire", "must not be negative (got %s)", expire)
	case expire > MaxExpire:
		return nil, bad("expire", "must be at most %s (got %s; https://pushover.net/api#priority)", MaxExpire, expire)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	return &Notifier{
		name:    name,
		token:   token,
		userKey: userKey,
		device:  c.Device,
		sound:   c.Sound,
		timeout: timeout,
		retry:   retry,
		expire:  expire,

		apiURL:       strings.TrimRight(apiURL, "/"),
		pollInterval: pollInterval,
		minRetryWait: ReceiptPollInterval,
		client: &http.Client{
			Transport: transport,
			// api.pushover.net does not redirect; following one would
			// repost the token to wherever it points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now:      time.Now,
		logger:   logger.With("channel", name),
		receipts: newReceiptStore(MaxOpenReceipts),
	}, nil
}

// readCredential reads a token or user key file. Its errors describe the
// file and the expected shape, never the content.
func readCredential(path string) (string, error) {
	if path == "" {
		return "", errors.New("not set")
	}
	key, err := notify.ReadSecretFile(path)
	if err != nil {
		return "", err
	}
	if !credentialPattern.MatchString(key) {
		return "", fmt.Errorf("%s does not hold a Pushover key (30 characters [A-Za-z0-9]; found %d characters)", path, len([]rune(key)))
	}
	return key, nil
}

// Name is the channel's configured name.
func (n *Notifier) Name() string { return n.name }

// Notify sends ev. On PhaseEnd, and when the alarm is acknowledged or
// resolved, it first cancels the alarm's open emergency receipts so phones
// stop re-alerting, then sends a normal-priority message saying so. A cancel
// that fails transiently returns Retry before anything is sent, so a retried
// Notify does not duplicate the message.
func (n *Notifier) Notify(ctx context.Context, ev alarm.Event) notify.Result {
	key := eventKey{alarmID: ev.AlarmID, eventID: ev.EventID}
	if withdraws(ev) {
		if res := n.cancelEvent(ctx, key); res.Verdict == notify.Retry {
			return res
		}
	}

	msg := n.compose(ev)
	receipt, res := n.send(ctx, msg)
	if res.Verdict != notify.Delivered {
		n.logger.Warn("pushover send failed", "alarm_id", ev.AlarmID, "event_id", ev.EventID,
			"phase", ev.Phase, "verdict", res.Verdict, "err", res.Err)
		return res
	}
	if msg.Get("priority") == strconv.Itoa(priorityEmergency) {
		if receipt == "" {
			// Delivered, but without a receipt it can be neither polled nor
			// cancelled: it still stops at its expire time.
			n.logger.Warn("pushover emergency accepted without a valid receipt", "alarm_id", ev.AlarmID, "event_id", ev.EventID)
		} else if evicted, ok := n.receipts.add(openReceipt{receipt: receipt, key: key, sent: n.now()}); ok {
			n.logger.Warn("too many open pushover receipts: oldest no longer polled nor cancelled",
				"receipt", evicted.receipt, "alarm_id", evicted.key.alarmID, "event_id", evicted.key.eventID, "max", MaxOpenReceipts)
		}
	}
	n.logger.Debug("pushover message sent", "alarm_id", ev.AlarmID, "event_id", ev.EventID,
		"phase", ev.Phase, "priority", msg.Get("priority"), "receipt", receipt)
	return res
}

// withdraws reports whether ev ends the need for an emergency re-alert: the
// alarm ended, resolved, or someone acknowledged it (through any channel).
func withdraws(ev alarm.Event) bool {
	return ev.Phase == alarm.PhaseEnd || ev.State == alarm.Resolved || ev.State == alarm.Acknowledged
}

// cancelEvent cancels every open emergency receipt of key. Receipts whose
// cancel fails transiently are kept for the next attempt and Retry is
// returned; a cancel Pushover refuses (unknown or expired receipt) is logged
// and dropped.
func (n *Notifier) cancelEvent(ctx context.Context, key eventKey) notify.Result {
	var retry notify.Result
	for _, r := range n.receipts.takeEvent(key) {
		res := n.cancel(ctx, r.receipt)
		switch res.Verdict {
		case notify.Delivered:
			n.logger.Info("pushover emergency cancelled", "receipt", r.receipt, "alarm_id", key.alarmID, "event_id", key.eventID)
		case notify.Retry:
			n.receipts.add(r)
			if retry.Verdict == 0 || res.RetryAfter > retry.RetryAfter {
				retry = res
			}
		default:
			n.logger.Error("pushover refused to cancel an emergency; it stops at its expire time",
				"receipt", r.receipt, "alarm_id", key.alarmID, "event_id", key.eventID, "err", res.Err)
		}
	}
	if retry.Verdict == notify.Retry {
		n.logger.Warn("pushover cancel failed, will retry", "alarm_id", key.alarmID, "event_id", key.eventID, "err", retry.Err)
	}
	return retry
}

// priorityFor maps an event to a Pushover priority: high -> emergency,
// medium -> high, low -> normal. Messages that withdraw an alarm go out at
// normal priority: asking for acknowledgement of an alarm already ended or
// acknowledged would be a nuisance alarm (clinical.md 5). An unknown priority
// is treated as high: a malformed alarm must not be quieter than a real one.
func priorityFor(ev alarm.Event) int {
	if withdraws(ev) {
		return priorityNormal
	}
	switch ev.Priority {
	case alarm.Low:
		return priorityNormal
	case alarm.Medium:
		return priorityHigh
	}
	return priorityEmergency
}
