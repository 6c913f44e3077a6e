// Package ntfy sends Vigil's alarm events to an ntfy topic
// (https://docs.ntfy.sh/publish/): one POST per event, the event's one-line
// text as the message, the priority marker in the title, the priority mapped
// to ntfy's 1-5 scale, and the signed acknowledge link as the click target
// and an action button.
//
// ntfy confirms that its server took the message, never that a person saw
// it (ecosystem.md, "Pushover, ntfy"): a Delivered verdict is acceptance
// only, so the dispatcher must pair this channel with the acknowledge link
// and timed escalation (clinical.md 1, distributed alarm systems).
package ntfy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// Config of one ntfy channel. Authentication is a bearer token (TokenFile)
// or basic auth (Username and PasswordFile), or none for an open topic.
type Config struct {
	Name string
	// URL is the topic's URL, https://host/topic. It must not carry
	// credentials or a query: use TokenFile, or Username and PasswordFile.
	URL string
	// TokenFile holds an ntfy access token (tk_...); surrounding whitespace
	// is ignored. Read once by New.
	TokenFile string
	// Username and PasswordFile, both or neither, give basic auth; a
	// trailing newline in the file is ignored. Read once by New.
	Username     string
	PasswordFile string
	// Timeout bounds one POST; 0 means notify.DefaultTimeout.
	Timeout time.Duration
	// Tags are added to every message after Vigil's own (see README).
	Tags []string
}

// topicPattern is what ntfy accepts as a topic name: letters, digits,
// underscores and dashes, at most 64 characters.
// https://docs.ntfy.sh/publish/#picking-a-topic
var topicPattern = regexp.MustCompile(`^[-_A-Za-z0-9]{1,64}$`)

// ConfigError says a Config cannot work; New returns it. Key is the config
// key at fault (token_file, url, ...), so a person knows what to fix.
type ConfigError struct {
	Channel string
	Key     string
	Reason  string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("ntfy channel %q: %s: %s", e.Channel, e.Key, e.Reason)
}

// Notifier publishes alarm events to one ntfy topic. Notify may be called
// from any goroutine; the Notifier holds no state between calls.
type Notifier struct {
	name    string
	url     string // never logged nor put in an error: the topic may be the only secret
	timeout time.Duration
	tags    []string
	// authorization is the full Authorization header value, or "".
	authorization string
	// secrets are scrubbed from server answers before they reach an error:
	// a broken server or proxy may echo the credentials back.
	secrets []string
	client  *http.Client
	logger  *slog.Logger
	now     func() time.Time
}

// New checks c and builds the channel. Secret files are read here, so a
// missing, empty or unreadable file fails at start rather than during an
// alarm. Errors name the config key and file, never a secret.
func New(c Config, logger *slog.Logger) (*Notifier, error) {
	if logger == nil {
		logger = slog.Default()
	}
	bad := func(key, format string, a ...any) error {
		return &ConfigError{Channel: c.Name, Key: key, Reason: fmt.Sprintf(format, a...)}
	}
	if strings.TrimSpace(c.Name) == "" {
		return nil, bad("name", "is empty")
	}
	topicURL, err := checkURL(c.URL)
	if err != nil {
		return nil, bad("url", "%v", err)
	}
	if c.Timeout < 0 {
		return nil, bad("timeout", "is negative")
	}
	tags, err := checkTags(c.Tags)
	if err != nil {
		return nil, bad("tags", "%v", err)
	}

	n := &Notifier{
		name:    c.Name,
		url:     topicURL.String(),
		timeout: c.Timeout,
		tags:    tags,
		client: &http.Client{
			// A redirect would turn the POST into a GET (RFC 9110 15.4.2
			// lets clients do so for 301 and 302, and Go does): the GET
			// would fetch ntfy's web page with 200 and look delivered
			// while nothing was published. Report the 3xx instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		logger: logger.With("channel", c.Name),
		now:    time.Now,
	}
	if n.timeout == 0 {
		n.timeout = notify.DefaultTimeout
	}

	auth := "none"
	switch {
	case c.TokenFile != "" && (c.Username != "" || c.PasswordFile != ""):
		return nil, bad("token_file", "set either token_file or username and password_file, not both")
	case c.TokenFile != "":
		token, err := notify.ReadSecretFile(c.TokenFile)
		if err != nil {
			return nil, bad("token_file", "%v", err)
		}
		if !isVisibleASCII(token) {
			// Never quote it: the message would print the secret.
			return nil, bad("token_file", "%s must hold one token with no spaces or control characters", c.TokenFile)
		}
		n.authorization = "Bearer " + token
		n.secrets = []string{token}
		auth = "bearer"
	case c.Username != "" || c.PasswordFile != "":
		if c.Username == "" {
			return nil, bad("username", "is empty but password_file is set; basic auth needs both")
		}
		if c.PasswordFile == "" {
			return nil, bad("password_file", "is empty but username is set; basic auth needs both")
		}
		// RFC 7617 section 2: the user-id cannot contain a colon.
		if strings.Contains(c.Username, ":") || !isPrintable(c.Username) {
			return nil, bad("username", "must not contain a colon or control characters")
		}
		password, err := notify.ReadPasswordFile(c.PasswordFile)
		if err != nil {
			return nil, bad("password_file", "%v", err)
		}
		if !isPrintable(password) {
			return nil, bad("password_file", "%s must hold one line with no control characters", c.PasswordFile)
		}
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(c.Username, password)
		n.authorization = req.Header.Get("Authorization")
		n.secrets = []string{password, strings.TrimPrefix(n.authorization, "Basic ")}
		auth = "basic"
	}
	if auth != "none" && topicURL.Scheme != "https" {
		n.logger.Warn("ntfy credentials will cross the network unencrypted; use an https url", "auth", auth)
	}
	// The host is logged, the topic path is not: on a public server the
	// topic name is the only thing that keeps the messages private.
	n.logger.Info("ntfy channel ready", "host", topicURL.Host, "auth", auth, "timeout", n.timeout)
	return n, nil
}

// checkURL accepts an absolute http(s) URL whose last path element is a
// valid topic. Its errors never repeat the URL, which holds the topic.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("must be an absolute http or https URL such as https://ntfy.example.org/mytopic")
	}
	if u.User != nil {
		return nil, errors.New("must not carry credentials; use token_file, or username and password_file")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must not have a query or fragment; set options through the config keys")
	}
	path := strings.TrimSuffix(u.Path, "/")
	topic := path[strings.LastIndex(path, "/")+1:]
	if !topicPattern.MatchString(topic) {
		return nil, errors.New("must end with a topic of 1 to 64 letters, digits, '-' or '_' (https://docs.ntfy.sh/publish/#picking-a-topic)")
	}
	u.Path = path
	u.RawPath = ""
	return u, nil
}

// checkTags trims the configured tags. The Tags header is a comma-separated
// list (https://docs.ntfy.sh/publish/#tags-emojis), so a tag cannot hold a
// comma.
func checkTags(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for i, t := range in {
		t = strings.TrimSpace(t)
		switch {
		case t == "":
			return nil, fmt.Errorf("tag %d is empty", i+1)
		case strings.Contains(t, ","):
			return nil, fmt.Errorf("tag %q contains a comma, which separates tags", t)
		case !isPrintable(t):
			return nil, fmt.Errorf("tag %d contains control characters", i+1)
		}
		out = append(out, t)
	}
	return out, nil
}

// Name is the channel's configured name.
func (n *Notifier) Name() string { return n.name }

// Notify publishes ev. The verdict follows the HTTP answer: 2xx Delivered;
// 408, 429, 5xx and network errors (timeouts included) Retry, with the
// server's Retry-After; any other status GiveUp.
func (n *Notifier) Notify(ctx context.Context, ev alarm.Event) notify.Result {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()

	msg := buildMessage(ev, n.tags)
	if msg.ackOmitted {
		// The link itself is not logged: it is a capability to acknowledge.
		n.logger.Warn("ack link left out of the ntfy message: not an absolute http(s) URL", "alarm_id", ev.AlarmID, "event_id", ev.EventID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, strings.NewReader(msg.body))
	if err != nil {
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("ntfy %s: building the request failed", n.name)}
	}
	msg.setHeaders(req.Header)
	if n.authorization != "" {
		req.Header.Set("Authorization", n.authorization)
	}

	resp, err := n.client.Do(req)
	if err != nil {
		res := notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("ntfy %s: POST failed: %w", n.name, notify.WithoutURL(err))}
		n.logger.Debug("ntfy send failed", "alarm_id", ev.AlarmID, "event_id", ev.EventID, "phase", string(ev.Phase), "verdict", res.Verdict.String(), "err", res.Err)
		return res
	}
	defer resp.Body.Close()
	res := resultFor(resp, n.now(), n.secrets)
	if res.Err != nil {
		res.Err = fmt.Errorf("ntfy %s: %w", n.name, res.Err)
	}
	n.logger.Debug("ntfy answered", "alarm_id", ev.AlarmID, "event_id", ev.EventID, "phase", string(ev.Phase),
		"status", resp.StatusCode, "verdict", res.Verdict.String(), "retry_after", res.RetryAfter)
	return res
}

func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// isPrintable rejects control characters (header injection, line breaks)
// and invalid UTF-8; spaces and non-ASCII letters pass.
func isPrintable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}
