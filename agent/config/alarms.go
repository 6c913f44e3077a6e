package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/vigil-monitor/vigil/agent/acklink"
	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify/alertmanager"
	"github.com/vigil-monitor/vigil/agent/notify/email"
	execnotify "github.com/vigil-monitor/vigil/agent/notify/exec"
	"github.com/vigil-monitor/vigil/agent/notify/ntfy"
	"github.com/vigil-monitor/vigil/agent/notify/pushover"
	"github.com/vigil-monitor/vigil/agent/notify/webhook"
)

// AlarmsConfig is the alarms: section.
type AlarmsConfig struct {
	// Rules are the physiological alarm rules; alarm.DefaultRules() (the
	// table of clinical.md 4) when the config has no alarms.rules key.
	Rules []alarm.Rule
	// RuleLines[i] is the config line of Rules[i]; 0 for default rules.
	RuleLines []int
	// PauseMax is the longest notification pause allowed; default
	// DefaultPauseMax.
	PauseMax time.Duration
	// AuditLog, when set, is an append-only JSON-lines copy of the audit
	// log (every alarm transition, acknowledgement, pause, notification
	// result and session change), beside the store's audit table, for
	// tail -f and log shippers; "" (default) keeps the store's only.
	AuditLog string
	// ClockCheck raises a technical alarm while the system clock is not
	// synchronised (the kernel's view, kept by an NTP client); default
	// true. false turns it off outside dosing sessions only.
	ClockCheck bool
	// AckLinks, when set, puts a signed acknowledge link in notifications.
	AckLinks *AckLinks

	clockCheckSet bool
}

// AckLinks configures the signed acknowledge links the agent serves at
// {base_url}/ack/{token}.
type AckLinks struct {
	// BaseURL is where phones on the clinic network reach this agent's
	// http.listen, e.g. https://room-1.clinic.lan:9817. Required.
	BaseURL string
	// KeyFile holds the HMAC key (at least 32 bytes); without it a random
	// key is made at start, so links of an earlier run stop working.
	KeyFile string
	// TTL is how long a link works; default DefaultAckLinkTTL.
	TTL  time.Duration
	Line int
}

// DefaultAckLinkTTL, MinAckLinkTTL and MaxAckLinkTTL are the acknowledge
// links' (see agent/acklink for the reasons).
const (
	DefaultAckLinkTTL = acklink.DefaultTTL
	MinAckLinkTTL     = acklink.MinTTL
	MaxAckLinkTTL     = acklink.MaxTTL
)

// NotifyConfig is the notify: section. Without it there are no channels and
// no routes: alarms are shown locally only.
type NotifyConfig struct {
	Channels []Channel
	Routes   []Route
}

// Channel is one notification channel. Exactly one of the per-type configs
// is set, the one Type names; file paths in it are absolute or relative to
// the working directory (relative ones in the file are anchored to the
// config file's directory at load).
type Channel struct {
	Name string // unique, [a-z0-9-]
	Type string // ntfy | pushover | webhook | alertmanager | email | exec

	NTFY         *ntfy.Config
	Pushover     *pushover.Config
	Webhook      *webhook.Config
	Alertmanager *alertmanager.Config
	Exec         *execnotify.Config
	Email        *email.Config

	Line int // config line of the channel entry
}

// Route sends alarms of some priorities to channels, and escalates to the
// route named Then when nobody acknowledges within EscalateAfter.
type Route struct {
	// Name is optional for a route selected by Priorities; a route reached
	// only through another's then (or a rule's route) needs one.
	Name           string
	Priorities     []alarm.Priority
	Channels       []string // channel names
	EscalateAfter  time.Duration
	RepeatInterval time.Duration // 0: no repeat
	Then           string        // the next tier's route name, or ""
	Line           int
}

// Channel returns the configured channel called name.
func (n *NotifyConfig) Channel(name string) (*Channel, bool) {
	for i := range n.Channels {
		if n.Channels[i].Name == name {
			return &n.Channels[i], true
		}
	}
	return nil, false
}

// Route returns the configured route called name.
func (n *NotifyConfig) Route(name string) (*Route, bool) {
	for i := range n.Routes {
		if n.Routes[i].Name != "" && n.Routes[i].Name == name {
			return &n.Routes[i], true
		}
	}
	return nil, false
}

const (
	// DefaultPauseMax: clinical.md 1 says a pause is time-limited,
	// "typically 1-2 min"; the upper end of that.
	DefaultPauseMax = 2 * time.Minute
	// MaxPauseMax bounds pause_max: a pause longer than this is the "off"
	// state of clinical.md 1, which must be a visible, deliberate act rather
	// than a long pause.
	MaxPauseMax = 10 * time.Minute
)

var (
	alarmsKeys   = []string{"rules", "pause_max", "audit_log", "clock_check", "ack_links"}
	ackLinksKeys = []string{"base_url", "key_file", "ttl"}
	ruleKeys     = []string{"name", "metric", "below", "above", "rise_over_baseline", "priority", "delay",
		"latching", "clear_margin", "clear_delay", "sat_seconds", "route"}
	satSecondsKeys = []string{"budget", "violations", "window"}
	notifyKeys     = []string{"channels", "routes"}
	routeKeys      = []string{"name", "priorities", "channels", "escalate_after", "then", "repeat_interval"}

	// channelKeys are the keys each channel type accepts, besides name and
	// type.
	channelKeys = map[string][]string{
		"ntfy":         {"url", "token_file", "username", "password_file", "timeout", "tags"},
		"pushover":     {"token_file", "user_key_file", "device", "timeout", "retry", "expire", "sound"},
		"webhook":      {"url", "secret_file", "timeout"},
		"alertmanager": {"url", "timeout", "resend_every", "username_file", "password_file", "generator_url"},
		"exec":         {"command", "timeout"},
		"email":        {"smarthost", "from", "to", "username", "password_file", "tls", "ca_file", "hello", "timeout"},
	}
	channelTypes = []string{"ntfy", "pushover", "webhook", "alertmanager", "email", "exec"}
)

// channelNameRE: channel and route names appear in logs, metrics labels and
// the audit trail.
var channelNameRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

const channelNameRule = "use 1-32 lower-case letters, digits and '-'"

func (w *walker) alarms(p pair, a *AlarmsConfig) {
	pairs, ok := w.mapping(p.val, p.path, "a mapping with rules: and pause_max:")
	if !ok {
		return
	}
	for _, q := range pairs {
		switch q.name {
		case "rules":
			a.Rules, a.RuleLines = w.rules(q)
		case "pause_max":
			v, set := w.duration(q)
			if !set {
				break
			}
			if v <= 0 || v > MaxPauseMax {
				w.add(q.val, q.path, "pause_max %s must be above 0 and at most %s (clinical.md 1: pauses are time-limited, typically 1-2 min)", v, MaxPauseMax)
				break
			}
			a.PauseMax = v
		case "audit_log":
			if v, set := w.text(q); set {
				if v == "" {
					w.add(q.val, q.path, "empty; omit the key to keep the audit log in the store only")
					break
				}
				a.AuditLog = w.resolvePath(v)
			}
		case "clock_check":
			if v, set := w.boolean(q); set {
				a.ClockCheck = v
				a.clockCheckSet = true
			}
		case "ack_links":
			a.AckLinks = w.ackLinks(q)
		default:
			w.unknown(q, alarmsKeys, "")
		}
	}
}

func (w *walker) ackLinks(p pair) *AckLinks {
	pairs, ok := w.mapping(p.val, p.path, "a mapping with base_url:, key_file: and ttl:")
	if !ok {
		return nil
	}
	l := &AckLinks{Line: p.val.Line}
	for _, q := range pairs {
		switch q.name {
		case "base_url":
			v, set := w.text(q)
			if !set {
				break
			}
			u, err := url.Parse(v)
			switch {
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				w.add(q.val, q.path, "%s is not an absolute http:// or https:// URL (where phones reach this agent, e.g. https://room-1.clinic.lan:9817)", quote(v))
			case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
				w.add(q.val, q.path, "%s must be scheme://host[:port] only: links are served at /ack/ on the agent's http.listen", quote(v))
			default:
				l.BaseURL = strings.TrimSuffix(v, "/")
			}
		case "key_file":
			v, set := w.text(q)
			if !set {
				break
			}
			path := w.resolvePath(v)
			data, msg := readSmallFile(path, 4096)
			switch {
			case msg != "":
				w.add(q.val, q.path, "%s", msg)
			case len(bytes.TrimSpace(data)) < 32:
				w.add(q.val, q.path, "%s holds %d bytes; the key must be at least 32 (e.g. head -c 48 /dev/urandom | base64 > %s)", path, len(bytes.TrimSpace(data)), path)
			default:
				l.KeyFile = path
			}
		case "ttl":
			v, set := w.duration(q)
			if !set {
				break
			}
			if v < MinAckLinkTTL || v > MaxAckLinkTTL {
				w.add(q.val, q.path, "ttl %s must be between %s and %s", v, MinAckLinkTTL, MaxAckLinkTTL)
				break
			}
			l.TTL = v
		default:
			w.unknown(q, ackLinksKeys, "")
		}
	}
	if w.at(p.path+".base_url") == nil {
		w.add(p.val, p.path+".base_url", "missing; the URL phones on the clinic network reach this agent at")
	}
	if l.TTL == 0 {
		l.TTL = DefaultAckLinkTTL
	}
	return l
}

// ruleField maps alarm.RuleError.Field to the config key.
var ruleField = map[string]string{
	"Name":                  "name",
	"Metric":                "metric",
	"AtOrBelow":             "below",
	"AtOrAbove":             "above",
	"RiseOverBaseline":      "rise_over_baseline",
	"Priority":              "priority",
	"Delay":                 "delay",
	"ClearDelay":            "clear_delay",
	"ClearMargin":           "clear_margin",
	"SatSeconds":            "sat_seconds",
	"SatSeconds.Budget":     "sat_seconds.budget",
	"SatSeconds.Violations": "sat_seconds.violations",
	"SatSeconds.Window":     "sat_seconds.window",
}

func (w *walker) rules(p pair) ([]alarm.Rule, []int) {
	if isNull(p.val) {
		w.add(p.val, p.path, "is empty; leave rules out for the default rules of clinical.md 4, or list at least one")
		return nil, nil
	}
	if p.val.Kind != yaml.SequenceNode {
		w.add(p.val, p.path, "expected a list of rules (each starting with \"- name: ...\"), got %s", describe(p.val))
		return nil, nil
	}
	if len(p.val.Content) == 0 {
		w.add(p.val, p.path, "is empty; leave rules out for the default rules of clinical.md 4, or list at least one")
		return nil, nil
	}
	var rules []alarm.Rule
	var lines []int
	first := map[string]int{}
	for i, entry := range p.val.Content {
		path := fmt.Sprintf("%s[%d]", p.path, i)
		n := resolve(entry)
		before := len(w.problems)
		r := w.rule(n, path)
		rules = append(rules, r)
		lines = append(lines, n.Line)
		if len(w.problems) != before {
			continue // a decoding problem: Validate would only repeat it
		}
		if err := r.Validate(); err != nil {
			w.ruleError(err, n, path)
			continue
		}
		if j, dup := first[r.Name]; dup {
			w.add(w.at(path+".name"), path+".name", "duplicate rule name %s (also %s[%d], line %d)", quote(r.Name), p.path, j, lines[j])
			continue
		}
		first[r.Name] = i
	}
	return rules, lines
}

// ruleError reports an alarm.RuleError at the key it names.
func (w *walker) ruleError(err error, n *yaml.Node, path string) {
	var re *alarm.RuleError
	if !errors.As(err, &re) {
		w.add(n, path, "%v", err)
		return
	}
	key, known := ruleField[re.Field]
	if !known {
		// "AtOrBelow/AtOrAbove/RiseOverBaseline": the limit keys together.
		w.add(n, path, "give exactly one limit: below, above or rise_over_baseline (%s)", strings.TrimPrefix(re.Reason, "exactly one must be set, "))
		return
	}
	if at := w.at(path + "." + key); at != nil {
		w.add(at, path+"."+key, "%s", re.Reason)
		return
	}
	w.add(n, path+"."+key, "missing (%s)", re.Reason)
}

func (w *walker) rule(n *yaml.Node, path string) alarm.Rule {
	var r alarm.Rule
	pairs, ok := w.mapping(n, path, "a rule (a mapping with name, metric, a limit, priority, ...)")
	if !ok {
		return r
	}
	if len(pairs) == 0 {
		w.add(n, path, "is empty; a rule needs name, metric, a limit (below, above or rise_over_baseline) and priority")
		return r
	}
	for _, q := range pairs {
		switch q.name {
		case "name":
			r.Name, _ = w.text(q)
		case "metric":
			r.Metric, _ = w.text(q)
		case "below":
			if v, set := w.number(q); set {
				r.AtOrBelow = &v
			}
		case "above":
			if v, set := w.number(q); set {
				r.AtOrAbove = &v
			}
		case "rise_over_baseline":
			if v, set := w.number(q); set {
				r.RiseOverBaseline = &v
			}
		case "priority":
			r.Priority, _ = w.priority(q.val, q.path)
		case "delay":
			r.Delay, _ = w.duration(q)
		case "latching":
			if v, set := w.boolean(q); set {
				r.Latching = &v
			}
		case "clear_margin":
			r.ClearMargin, _ = w.number(q)
		case "clear_delay":
			r.ClearDelay, _ = w.duration(q)
		case "sat_seconds":
			r.SatSeconds = w.satSeconds(q)
		case "route":
			if s, set := w.text(q); set {
				if !channelNameRE.MatchString(s) {
					w.add(q.val, q.path, "invalid route name %s: %s", quote(s), channelNameRule)
					break
				}
				r.Route = s
			}
		default:
			w.unknown(q, ruleKeys, "")
		}
	}
	return r
}

func (w *walker) satSeconds(p pair) *alarm.SatSeconds {
	pairs, ok := w.mapping(p.val, p.path, "a mapping such as {budget: 25}")
	if !ok {
		return nil
	}
	s := &alarm.SatSeconds{}
	for _, q := range pairs {
		switch q.name {
		case "budget":
			s.Budget, _ = w.number(q)
		case "violations":
			s.Violations, _ = w.integer(q)
		case "window":
			s.Window, _ = w.duration(q)
		default:
			w.unknown(q, satSecondsKeys, "")
		}
	}
	if _, there := w.nodes[p.path+".budget"]; !there && !w.bad[p.path] {
		w.add(p.val, p.path+".budget", "missing; the integration budget in %%·s (clinical.md 5 names 10, 25, 50 or 100)")
	}
	return s
}

// number decodes an integer or decimal number.
func (w *walker) number(p pair) (float64, bool) {
	if isNull(p.val) {
		return 0, false
	}
	if p.val.Kind != yaml.ScalarNode || (p.val.ShortTag() != "!!int" && p.val.ShortTag() != "!!float") {
		w.add(p.val, p.path, "expected a number, got %s", describe(p.val))
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(p.val.Value, "_", ""), 64)
	if err != nil || !finite(v) {
		w.add(p.val, p.path, "expected a finite number, got %s", quote(p.val.Value))
		return 0, false
	}
	return v, true
}

func finite(v float64) bool { return v == v && v-v == 0 }

// boolean decodes true or false.
func (w *walker) boolean(p pair) (bool, bool) {
	if isNull(p.val) {
		return false, false
	}
	if p.val.Kind != yaml.ScalarNode || p.val.ShortTag() != "!!bool" {
		w.add(p.val, p.path, "expected true or false, got %s", describe(p.val))
		return false, false
	}
	var v bool
	if err := p.val.Decode(&v); err != nil {
		w.add(p.val, p.path, "expected true or false, got %s", describe(p.val))
		return false, false
	}
	return v, true
}

func (w *walker) priority(n *yaml.Node, path string) (alarm.Priority, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		w.add(n, path, "expected a priority (high, medium or low), got %s", describe(n))
		return 0, false
	}
	v, ok := alarm.ParsePriority(n.Value)
	if !ok {
		w.add(n, path, "invalid priority %s (one of high, medium, low)", quote(n.Value))
		return 0, false
	}
	return v, true
}

// strings decodes a list of strings.
func (w *walker) stringList(p pair) ([]string, []*yaml.Node) {
	if isNull(p.val) {
		return nil, nil
	}
	if p.val.Kind != yaml.SequenceNode {
		w.add(p.val, p.path, "expected a list such as [a, b], got %s", describe(p.val))
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	for i, e := range p.val.Content {
		e = resolve(e)
		if e.Kind != yaml.ScalarNode || isNull(e) {
			w.add(e, fmt.Sprintf("%s[%d]", p.path, i), "expected a string, got %s", describe(e))
			continue
		}
		out = append(out, e.Value)
		nodes = append(nodes, e)
	}
	return out, nodes
}

func (w *walker) notify(p pair, nc *NotifyConfig) {
	pairs, ok := w.mapping(p.val, p.path, "a mapping with channels: and routes:")
	if !ok {
		return
	}
	for _, q := range pairs {
		switch q.name {
		case "channels":
			nc.Channels = w.channels(q)
		case "routes":
			nc.Routes = w.routes(q)
		default:
			w.unknown(q, notifyKeys, "")
		}
	}
}

func (w *walker) channels(p pair) []Channel {
	return namedList(w, p, "a list of channels (each starting with \"- name: ...\")", "channel name",
		w.channel, func(c Channel) (string, int) { return c.Name, c.Line })
}

func (w *walker) channel(n *yaml.Node, path string) Channel {
	c := Channel{Line: n.Line}
	pairs, ok := w.mapping(n, path, "a channel (a mapping with name, type and its settings)")
	if !ok {
		return c
	}
	var settings []pair
	for _, q := range pairs {
		switch q.name {
		case "name":
			if s, set := w.text(q); set {
				if !channelNameRE.MatchString(s) {
					w.add(q.val, q.path, "invalid channel name %s: %s", quote(s), channelNameRule)
					break
				}
				c.Name = s
			}
		case "type":
			c.Type, _ = w.text(q)
		default:
			settings = append(settings, q)
		}
	}
	if c.Name == "" && !w.bad[path+".name"] {
		w.add(n, path+".name", "missing; every channel needs a name (%s)", channelNameRule)
	}
	switch {
	case w.bad[path+".type"]:
		return c
	case c.Type == "":
		w.add(n, path+".type", "missing; one of %s", strings.Join(channelTypes, ", "))
		return c
	case channelKeys[c.Type] == nil:
		w.add(w.at(path+".type"), path+".type", "unknown channel type %s (known: %s)", quote(c.Type), strings.Join(channelTypes, ", "))
		return c
	}
	known := append([]string{"name", "type"}, channelKeys[c.Type]...)
	var bad bool
	str := func(q pair) string { s, _ := w.text(q); return s }
	file := func(q pair) string {
		if s, set := w.text(q); set {
			return w.resolvePath(s)
		}
		return ""
	}
	dur := func(q pair) time.Duration { d, _ := w.duration(q); return d }
	var (
		nt = &ntfy.Config{Name: c.Name}
		po = &pushover.Config{Name: c.Name}
		wh = &webhook.Config{Name: c.Name}
		am = &alertmanager.Config{Name: c.Name}
		ex = &execnotify.Config{Name: c.Name}
		em = &email.Config{Name: c.Name}
	)
	for _, q := range settings {
		if !slices.Contains(channelKeys[c.Type], q.name) {
			w.unknown(q, known, fmt.Sprintf(" for a %s channel", c.Type))
			bad = true
			continue
		}
		switch c.Type + "." + q.name {
		case "ntfy.url":
			nt.URL = str(q)
		case "ntfy.token_file":
			nt.TokenFile = file(q)
		case "ntfy.username":
			nt.Username = str(q)
		case "ntfy.password_file":
			nt.PasswordFile = file(q)
		case "ntfy.timeout":
			nt.Timeout = dur(q)
		case "ntfy.tags":
			nt.Tags, _ = w.stringList(q)
		case "pushover.token_file":
			po.TokenFile = file(q)
		case "pushover.user_key_file":
			po.UserKeyFile = file(q)
		case "pushover.device":
			po.Device = str(q)
		case "pushover.timeout":
			po.Timeout = dur(q)
		case "pushover.retry":
			po.Retry = dur(q)
		case "pushover.expire":
			po.Expire = dur(q)
		case "pushover.sound":
			po.Sound = str(q)
		case "webhook.url":
			wh.URL = str(q)
		case "webhook.secret_file":
			wh.SecretFile = file(q)
		case "webhook.timeout":
			wh.Timeout = dur(q)
		case "alertmanager.url":
			am.URL = str(q)
		case "alertmanager.timeout":
			am.Timeout = dur(q)
		case "alertmanager.resend_every":
			am.ResendEvery = dur(q)
		case "alertmanager.username_file":
			am.UsernameFile = file(q)
		case "alertmanager.password_file":
			am.PasswordFile = file(q)
		case "alertmanager.generator_url":
			am.GeneratorURL = str(q)
		case "exec.command":
			ex.Command, _ = w.stringList(q)
		case "exec.timeout":
			ex.Timeout = dur(q)
		case "email.smarthost":
			em.Smarthost = str(q)
		case "email.from":
			em.From = str(q)
		case "email.to":
			em.To, _ = w.stringList(q)
		case "email.username":
			em.Username = str(q)
		case "email.password_file":
			em.PasswordFile = file(q)
		case "email.tls":
			em.TLS = str(q)
		case "email.ca_file":
			em.CAFile = file(q)
		case "email.hello":
			em.Hello = str(q)
		case "email.timeout":
			em.Timeout = dur(q)
		}
		if w.bad[q.path] {
			bad = true
		}
	}
	switch c.Type {
	case "ntfy":
		c.NTFY = nt
	case "pushover":
		c.Pushover = po
	case "webhook":
		c.Webhook = wh
	case "alertmanager":
		c.Alertmanager = am
	case "exec":
		c.Exec = ex
	case "email":
		c.Email = em
	}
	if !bad && c.Name != "" {
		w.checkChannel(c, n, path, settings)
	}
	return c
}

// checkChannel runs the notify package's own constructor on the channel, so
// the config check accepts exactly what the agent will: it checks urls and
// reads the secret files (a missing or unreadable one fails here, at load,
// not during an alarm). The constructors only read files and build an idle
// http.Client (exec looks the command up in PATH): no goroutine, no
// connection, no message sent. The notifier built is dropped; the agent
// constructs its own from the Channel.
func (w *walker) checkChannel(c Channel, n *yaml.Node, path string, settings []pair) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	switch c.Type {
	case "ntfy":
		_, err = ntfy.New(*c.NTFY, quiet)
	case "pushover":
		_, err = pushover.New(*c.Pushover, quiet)
	case "webhook":
		_, err = webhook.New(*c.Webhook, quiet)
	case "alertmanager":
		_, err = alertmanager.New(*c.Alertmanager, quiet)
	case "exec":
		_, err = execnotify.New(*c.Exec, quiet)
	case "email":
		_, err = email.New(*c.Email, quiet)
	}
	if err == nil {
		return
	}
	key, reason := "", err.Error()
	var (
		ne *ntfy.ConfigError
		pe *pushover.ConfigError
		we *webhook.ConfigError
		ae *alertmanager.ConfigError
		ee *execnotify.ConfigError
		me *email.ConfigError
	)
	switch {
	case errors.As(err, &ne):
		key, reason = ne.Key, ne.Reason
	case errors.As(err, &pe):
		key, reason = pe.Key, pe.Reason
	case errors.As(err, &we):
		key, reason = we.Key, we.Reason
	case errors.As(err, &ae):
		reason = ae.Reason
	case errors.As(err, &ee):
		reason = ee.Reason
	case errors.As(err, &me):
		key, reason = me.Key, me.Reason
	}
	if key == "" {
		// The message names its key in words ("username_file and
		// password_file go together"): pin it when exactly one key matches.
		var named []pair
		for _, q := range settings {
			if mentions(reason, q.name) {
				named = append(named, q)
			}
		}
		if len(named) == 1 {
			key = named[0].name
		}
	}
	if at := w.at(path + "." + key); key != "" && at != nil {
		w.add(at, path+"."+key, "%s", reason)
		return
	}
	if key != "" {
		w.add(n, path+"."+key, "%s", reason)
		return
	}
	w.add(n, path, "%s", reason)
}

func (w *walker) routes(p pair) []Route {
	return namedList(w, p, "a list of routes (each starting with \"- priorities: ...\" or \"- name: ...\")", "route name",
		w.route, func(r Route) (string, int) { return r.Name, r.Line })
}

// namedList decodes a list whose entries carry unique names (channels,
// routes): each entry with decode, and a name an earlier entry already has
// is reported at the later entry.
func namedList[T any](w *walker, p pair, what, label string, decode func(*yaml.Node, string) T, nameLine func(T) (string, int)) []T {
	if isNull(p.val) {
		return nil
	}
	if p.val.Kind != yaml.SequenceNode {
		w.add(p.val, p.path, "expected %s, got %s", what, describe(p.val))
		return nil
	}
	var out []T
	first := map[string]int{}
	for i, entry := range p.val.Content {
		path := fmt.Sprintf("%s[%d]", p.path, i)
		v := decode(resolve(entry), path)
		out = append(out, v)
		name, _ := nameLine(v)
		if name == "" {
			continue
		}
		if j, dup := first[name]; dup {
			_, line := nameLine(out[j])
			w.add(w.at(path+".name"), path+".name", "duplicate %s %s (also %s[%d], line %d)", label, quote(name), p.path, j, line)
			continue
		}
		first[name] = i
	}
	return out
}

func (w *walker) route(n *yaml.Node, path string) Route {
	r := Route{Line: n.Line}
	pairs, ok := w.mapping(n, path, "a route (a mapping with priorities or name, and channels)")
	if !ok {
		return r
	}
	for _, q := range pairs {
		switch q.name {
		case "name":
			if s, set := w.text(q); set {
				if !channelNameRE.MatchString(s) {
					w.add(q.val, q.path, "invalid route name %s: %s", quote(s), channelNameRule)
					break
				}
				r.Name = s
			}
		case "priorities":
			if isNull(q.val) {
				break
			}
			if q.val.Kind != yaml.SequenceNode {
				w.add(q.val, q.path, "expected a list such as [high, medium], got %s", describe(q.val))
				break
			}
			for i, e := range q.val.Content {
				if v, ok := w.priority(resolve(e), fmt.Sprintf("%s[%d]", q.path, i)); ok {
					if slices.Contains(r.Priorities, v) {
						w.add(e, fmt.Sprintf("%s[%d]", q.path, i), "priority %s is listed twice", v)
						continue
					}
					r.Priorities = append(r.Priorities, v)
				}
			}
		case "channels":
			r.Channels, _ = w.stringList(q)
		case "escalate_after":
			r.EscalateAfter, _ = w.duration(q)
		case "repeat_interval":
			r.RepeatInterval, _ = w.duration(q)
		case "then":
			r.Then, _ = w.text(q)
		default:
			w.unknown(q, routeKeys, "")
		}
	}
	if len(r.Channels) == 0 && !w.bad[path+".channels"] {
		w.add(n, path+".channels", "missing or empty; a route sends to at least one channel")
	}
	if r.Name == "" && len(r.Priorities) == 0 && !w.bad[path+".name"] && !w.bad[path+".priorities"] {
		w.add(n, path, "has neither priorities nor a name, so no alarm can ever reach it")
	}
	if r.EscalateAfter < 0 {
		w.add(w.at(path+".escalate_after"), path+".escalate_after", "must not be negative, got %s", r.EscalateAfter)
	}
	if r.RepeatInterval < 0 {
		w.add(w.at(path+".repeat_interval"), path+".repeat_interval", "must not be negative, got %s", r.RepeatInterval)
	}
	if r.Then != "" && r.EscalateAfter <= 0 && !w.bad[path+".escalate_after"] {
		w.add(w.at(path+".then"), path+".escalate_after", "missing; then escalates after escalate_after without acknowledgement (clinical.md 5), which must be above 0")
	}
	if r.Then == "" && r.EscalateAfter > 0 {
		w.add(w.at(path+".escalate_after"), path+".then", "missing; escalate_after needs then: the route to escalate to")
	}
	return r
}

// crossCheckAlarms checks the references between rules, routes and
// channels, and applies the defaults of the two sections.
func (w *walker) crossCheckAlarms(c *Config) {
	if w.at("alarms.rules") == nil {
		c.Alarms.Rules = alarm.DefaultRules()
		c.Alarms.RuleLines = make([]int, len(c.Alarms.Rules))
	}
	if c.Alarms.PauseMax == 0 {
		c.Alarms.PauseMax = DefaultPauseMax
	}
	if !c.Alarms.clockCheckSet {
		c.Alarms.ClockCheck = true
	}
	// ValidateRules is the engine's own acceptance test; every rule passed
	// it one by one above, so this only fails on an inconsistency between
	// the two checks, reported rather than left for the engine to refuse.
	if !w.anyBad("alarms.rules") {
		if err := alarm.ValidateRules(c.Alarms.Rules); err != nil {
			w.add(w.at("alarms.rules"), "alarms.rules", "%v", err)
		}
	}

	nc := &c.Notify
	channels := map[string]bool{}
	for _, ch := range nc.Channels {
		channels[ch.Name] = true
	}
	routes := map[string]int{}
	for i, r := range nc.Routes {
		if r.Name != "" {
			if _, dup := routes[r.Name]; !dup {
				routes[r.Name] = i
			}
		}
	}
	for i, r := range nc.Routes {
		path := fmt.Sprintf("notify.routes[%d]", i)
		for j, name := range r.Channels {
			key := fmt.Sprintf("%s.channels[%d]", path, j)
			if !channels[name] && !w.anyBad("notify.channels") {
				at := w.at(path + ".channels")
				if at != nil && at.Kind == yaml.SequenceNode && j < len(at.Content) {
					at = at.Content[j]
				}
				w.add(at, key, "no channel is named %s (channels: %s)", quote(name), nameList(channels))
			}
		}
		if r.Then != "" {
			if _, ok := routes[r.Then]; !ok {
				w.add(w.at(path+".then"), path+".then", "no route is named %s", quote(r.Then))
			}
		}
	}
	// Escalation cycles: following then from any route must end.
	for i, r := range nc.Routes {
		seen := map[int]bool{i: true}
		chain := []string{routeLabel(r, i)}
		lowest := i
		for next := r.Then; next != ""; {
			j, ok := routes[next]
			if !ok {
				break
			}
			chain = append(chain, routeLabel(nc.Routes[j], j))
			lowest = min(lowest, j)
			if j == i {
				if lowest != i {
					break // reported once, from the loop's first route in the file
				}
				path := fmt.Sprintf("notify.routes[%d]", i)
				w.add(w.at(path+".then"), path+".then", "escalation loops back: %s", strings.Join(chain, " -> "))
				break
			}
			if seen[j] {
				break // a loop not through i: reported from a route on it
			}
			seen[j] = true
			next = nc.Routes[j].Then
		}
	}
	for i, r := range c.Alarms.Rules {
		if r.Route == "" {
			continue
		}
		if _, ok := routes[r.Route]; !ok {
			path := fmt.Sprintf("alarms.rules[%d].route", i)
			w.add(w.at(path), path, "no route is named %s", quote(r.Route))
		}
	}
}

func routeLabel(r Route, i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("routes[%d]", i)
}

// anyBad reports whether a problem was found at prefix or under it.
func (w *walker) anyBad(prefix string) bool {
	for k := range w.bad {
		if k == prefix || strings.HasPrefix(k, prefix+".") || strings.HasPrefix(k, prefix+"[") {
			return true
		}
	}
	return false
}

func nameList(set map[string]bool) string {
	if len(set) == 0 {
		return "none configured"
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
