package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// secretFiles writes the channel secrets of fullNotify into a temporary
// directory and returns it.
func secretFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"ntfy.token":     "tk_k3yk3yk3yk3yk3yk3yk3yk3yk3yk3\n",
		"webhook.secret": "hmac-key-for-tests\n",
		"pushover.token": "azGDORePK8gMaC0QOYAMyEEuzJnyUi\n",
		"pushover.user":  "uQiRzpo4DXghDmr9QzzfQu27cmVRsG\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fullNotify is the brief's notify example with secrets under dir; it starts
// at line 7 when appended to head.
func fullNotify(dir string) string {
	return fmt.Sprintf(`notify:
  channels:
    - name: nurses-ntfy
      type: ntfy
      url: https://ntfy.clinic.example/room-1
      token_file: %[1]s/ntfy.token
    - name: audit-webhook
      type: webhook
      url: https://hooks.clinic.example/vigil
      secret_file: %[1]s/webhook.secret
    - name: physician-pushover
      type: pushover
      token_file: %[1]s/pushover.token
      user_key_file: %[1]s/pushover.user
  routes:
    - priorities: [high, medium]
      channels: [nurses-ntfy, audit-webhook]
      escalate_after: 60s
      then: physician
      repeat_interval: 5m
    - name: physician
      channels: [physician-pushover]
`, dir)
}

func TestAlarmsDefaults(t *testing.T) {
	cfg := mustParse(t, head)
	if !reflect.DeepEqual(cfg.Alarms.Rules, alarm.DefaultRules()) {
		t.Errorf("rules without alarms key = %+v, want alarm.DefaultRules()", cfg.Alarms.Rules)
	}
	if cfg.Alarms.PauseMax != DefaultPauseMax {
		t.Errorf("pause_max = %v, want %v", cfg.Alarms.PauseMax, DefaultPauseMax)
	}
	if len(cfg.Notify.Channels) != 0 || len(cfg.Notify.Routes) != 0 {
		t.Errorf("notify without notify key = %+v, want nothing", cfg.Notify)
	}
	if cfg.Alarms.AuditLog != "" || !cfg.Alarms.ClockCheck || cfg.Alarms.AckLinks != nil {
		t.Errorf("defaults: audit_log %q, clock_check %v, ack_links %+v", cfg.Alarms.AuditLog, cfg.Alarms.ClockCheck, cfg.Alarms.AckLinks)
	}
	// alarms: with only pause_max keeps the default rules.
	cfg = mustParse(t, head+"alarms:\n  pause_max: 90s\nnotify:\n")
	if len(cfg.Alarms.Rules) != len(alarm.DefaultRules()) || cfg.Alarms.PauseMax != 90*time.Second {
		t.Errorf("alarms = %+v", cfg.Alarms)
	}
}

func TestAlarmsAuditClockAckLinks(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ack.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, head+"alarms:\n  audit_log: "+dir+"/audit.jsonl\n  clock_check: false\n  ack_links:\n    base_url: https://room-1.clinic.lan:9817/\n    key_file: "+key+"\n")
	want := AckLinks{BaseURL: "https://room-1.clinic.lan:9817", KeyFile: key, TTL: DefaultAckLinkTTL, Line: 11}
	if cfg.Alarms.AuditLog != dir+"/audit.jsonl" || cfg.Alarms.ClockCheck || cfg.Alarms.AckLinks == nil || *cfg.Alarms.AckLinks != want {
		t.Errorf("alarms = audit %q clock %v links %+v", cfg.Alarms.AuditLog, cfg.Alarms.ClockCheck, cfg.Alarms.AckLinks)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("too short\n"), 0o600)
	_, ps := parse(t, head+"alarms:\n  ack_links:\n    base_url: https://room-1\n    key_file: "+short+"\n")
	if ps == nil || !strings.Contains(ps.Error(), "alarms.ack_links.key_file") || !strings.Contains(ps.Error(), "at least 32") {
		t.Errorf("short key: %v", ps)
	}
}

func TestAlarmsFullExample(t *testing.T) {
	dir := secretFiles(t)
	src := head + fullNotify(dir) + `alarms:
  rules:
    - name: spo2-low-medium
      metric: spo2
      below: 90
      priority: medium
      delay: 15s
      latching: false
      clear_margin: 2.5
      clear_delay: 10s
      route: physician
    - name: spo2-sat
      metric: spo2
      below: 88
      priority: high
      sat_seconds: {budget: 25, violations: 4, window: 2m}
    - name: pulse-high
      metric: pulse_rate
      above: 140
      priority: high
    - name: sys-rise
      metric: nibp_systolic
      rise_over_baseline: 40
      priority: low
  pause_max: 1m
`
	cfg := mustParse(t, src)
	f := func(v float64) *float64 { return &v }
	no := false
	want := []alarm.Rule{
		{Name: "spo2-low-medium", Metric: "spo2", AtOrBelow: f(90), Priority: alarm.Medium, Delay: 15 * time.Second,
			Latching: &no, ClearMargin: 2.5, ClearDelay: 10 * time.Second, Route: "physician"},
		{Name: "spo2-sat", Metric: "spo2", AtOrBelow: f(88), Priority: alarm.High,
			SatSeconds: &alarm.SatSeconds{Budget: 25, Violations: 4, Window: 2 * time.Minute}},
		{Name: "pulse-high", Metric: "pulse_rate", AtOrAbove: f(140), Priority: alarm.High},
		{Name: "sys-rise", Metric: "nibp_systolic", RiseOverBaseline: f(40), Priority: alarm.Low},
	}
	if !reflect.DeepEqual(cfg.Alarms.Rules, want) {
		t.Errorf("rules =\n%+v\nwant\n%+v", cfg.Alarms.Rules, want)
	}
	if want := []int{31, 40, 45, 49}; !reflect.DeepEqual(cfg.Alarms.RuleLines, want) {
		t.Errorf("rule lines = %v, want %v", cfg.Alarms.RuleLines, want)
	}
	if cfg.Alarms.PauseMax != time.Minute {
		t.Errorf("pause_max = %v", cfg.Alarms.PauseMax)
	}

	n := cfg.Notify
	if len(n.Channels) != 3 {
		t.Fatalf("channels = %+v", n.Channels)
	}
	nt, wh, po := n.Channels[0], n.Channels[1], n.Channels[2]
	if nt.Name != "nurses-ntfy" || nt.Type != "ntfy" || nt.Line != 9 || nt.NTFY == nil || nt.Webhook != nil ||
		nt.NTFY.Name != "nurses-ntfy" || nt.NTFY.URL != "https://ntfy.clinic.example/room-1" || nt.NTFY.TokenFile != dir+"/ntfy.token" {
		t.Errorf("ntfy channel = %+v %+v", nt, nt.NTFY)
	}
	if wh.Type != "webhook" || wh.Webhook == nil || wh.Webhook.SecretFile != dir+"/webhook.secret" || wh.Webhook.URL != "https://hooks.clinic.example/vigil" {
		t.Errorf("webhook channel = %+v", wh)
	}
	if po.Type != "pushover" || po.Pushover == nil || po.Pushover.TokenFile != dir+"/pushover.token" || po.Pushover.UserKeyFile != dir+"/pushover.user" {
		t.Errorf("pushover channel = %+v", po)
	}
	if c, ok := n.Channel("audit-webhook"); !ok || c.Line != 13 {
		t.Errorf("Channel(audit-webhook) = %+v, %v", c, ok)
	}
	wantRoutes := []Route{
		{Priorities: []alarm.Priority{alarm.High, alarm.Medium}, Channels: []string{"nurses-ntfy", "audit-webhook"},
			EscalateAfter: time.Minute, RepeatInterval: 5 * time.Minute, Then: "physician", Line: 22},
		{Name: "physician", Channels: []string{"physician-pushover"}, Line: 27},
	}
	if !reflect.DeepEqual(n.Routes, wantRoutes) {
		t.Errorf("routes =\n%+v\nwant\n%+v", n.Routes, wantRoutes)
	}
	if r, ok := n.Route("physician"); !ok || r.Line != 27 {
		t.Errorf("Route(physician) = %+v, %v", r, ok)
	}
}

// Relative secret paths are taken from the config file's directory.
func TestChannelSecretRelativeToConfig(t *testing.T) {
	dir := secretFiles(t)
	src := head + "notify:\n  channels:\n    - name: hook\n      type: webhook\n      url: https://h.example/x\n      secret_file: webhook.secret\n"
	cfg, err := Parse(filepath.Join(dir, "vigil.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Notify.Channels[0].Webhook.SecretFile; got != filepath.Join(dir, "webhook.secret") {
		t.Errorf("secret_file = %s", got)
	}
}

// Each case has exactly one problem, at a known line and key.
func TestAlarmProblems(t *testing.T) {
	dir := secretFiles(t)
	rule := func(extra string) string {
		return head + "alarms:\n  rules:\n    - name: r1\n      metric: spo2\n      priority: medium\n" + extra
	}
	hook := func(extra string) string {
		return head + "notify:\n  channels:\n    - name: hook\n      type: webhook\n      url: https://h.example/x\n      secret_file: " + dir + "/webhook.secret\n" + extra
	}
	cases := []struct {
		name string
		src  string
		line int
		key  string
		msg  string
	}{
		// alarms
		{"alarms not a mapping", head + "alarms: [1]\n", 7, "alarms", "expected a mapping with rules"},
		{"unknown alarms key", head + "alarms:\n  rule: []\n", 8, "alarms.rule", "unknown key (known: rules, pause_max, audit_log, clock_check, ack_links)"},
		{"audit_log empty", head + "alarms:\n  audit_log: \"\"\n", 8, "alarms.audit_log", "empty; omit the key"},
		{"clock_check not bool", head + "alarms:\n  clock_check: yes please\n", 8, "alarms.clock_check", "expected true or false"},
		{"ack_links not a mapping", head + "alarms:\n  ack_links: https://x\n", 8, "alarms.ack_links", "expected a mapping with base_url"},
		{"ack_links no base_url", head + "alarms:\n  ack_links:\n    ttl: 10m\n", 9, "alarms.ack_links.base_url", "missing; the URL phones"},
		{"ack_links relative base_url", head + "alarms:\n  ack_links:\n    base_url: room-1:9817\n", 9, "alarms.ack_links.base_url", "not an absolute http:// or https:// URL"},
		{"ack_links base_url with credentials", head + "alarms:\n  ack_links:\n    base_url: https://u:p@room-1\n", 9, "alarms.ack_links.base_url", "must be scheme://host[:port] only"},
		{"ack_links base_url with a path", head + "alarms:\n  ack_links:\n    base_url: https://room-1/vigil\n", 9, "alarms.ack_links.base_url", "scheme://host[:port] only"},
		{"ack_links ttl too short", head + "alarms:\n  ack_links:\n    base_url: https://room-1\n    ttl: 10s\n", 10, "alarms.ack_links.ttl", "between 1m0s and 4h0m0s"},
		{"ack_links key missing", head + "alarms:\n  ack_links:\n    base_url: https://room-1\n    key_file: /nonexistent/ack.key\n", 10, "alarms.ack_links.key_file", "cannot read /nonexistent/ack.key"},
		{"ack_links unknown key", head + "alarms:\n  ack_links:\n    base_url: https://room-1\n    secret: x\n", 10, "alarms.ack_links.secret", "unknown key (known: base_url, key_file, ttl)"},
		{"pause_max zero", head + "alarms:\n  pause_max: 0s\n", 8, "alarms.pause_max", "must be above 0"},
		{"pause_max too long", head + "alarms:\n  pause_max: 1h\n", 8, "alarms.pause_max", "at most 10m0s"},
		{"pause_max no unit", head + "alarms:\n  pause_max: 120\n", 8, "alarms.pause_max", "has no unit"},
		{"empty rules", head + "alarms:\n  rules: []\n", 8, "alarms.rules", "is empty"},
		{"rules not a list", head + "alarms:\n  rules: {a: 1}\n", 8, "alarms.rules", "expected a list of rules"},
		{"rule unknown key", rule("      below: 90\n      colour: red\n"), 13, "alarms.rules[0].colour", "unknown key (known: name, metric, below, above, rise_over_baseline"},
		{"rule no limit", rule(""), 9, "alarms.rules[0]", "give exactly one limit: below, above or rise_over_baseline (found 0)"},
		{"rule two limits", rule("      below: 90\n      above: 95\n"), 9, "alarms.rules[0]", "found 2"},
		{"rule limit out of range", rule("      below: 190\n"), 12, "alarms.rules[0].below", "outside the possible range of spo2"},
		{"rule limit not a number", rule("      below: low\n"), 12, "alarms.rules[0].below", `expected a number, got a string ("low")`},
		{"rule unknown metric", head + "alarms:\n  rules:\n    - name: r1\n      metric: spo3\n      below: 90\n      priority: high\n", 10, "alarms.rules[0].metric", `"spo3" is not a metric`},
		{"rule missing name", head + "alarms:\n  rules:\n    - metric: spo2\n      below: 90\n      priority: high\n", 9, "alarms.rules[0].name", "missing (is empty)"},
		{"rule bad priority", head + "alarms:\n  rules:\n    - name: r1\n      metric: spo2\n      below: 90\n      priority: urgent\n", 12, "alarms.rules[0].priority", `invalid priority "urgent"`},
		{"rule missing priority", head + "alarms:\n  rules:\n    - name: r1\n      metric: spo2\n      below: 90\n", 9, "alarms.rules[0].priority", "missing (must be low, medium or high"},
		{"rule negative delay", rule("      below: 90\n      delay: -5s\n"), 13, "alarms.rules[0].delay", "must not be negative"},
		{"rule negative clear margin", rule("      below: 90\n      clear_margin: -1\n"), 13, "alarms.rules[0].clear_margin", "must be a number >= 0"},
		{"rule latching not bool", rule("      below: 90\n      latching: maybe\n"), 13, "alarms.rules[0].latching", "expected true or false"},
		{"sat_seconds on above", rule("      above: 95\n      sat_seconds: {budget: 25}\n"), 13, "alarms.rules[0].sat_seconds", "needs an AtOrBelow limit"},
		{"sat_seconds with delay", rule("      below: 90\n      delay: 15s\n      sat_seconds: {budget: 25}\n"), 14, "alarms.rules[0].sat_seconds", "replaces Delay"},
		{"sat_seconds bad budget", rule("      below: 90\n      sat_seconds: {budget: -3}\n"), 13, "alarms.rules[0].sat_seconds.budget", "must be a positive number"},
		{"sat_seconds no budget", rule("      below: 90\n      sat_seconds: {window: 30s}\n"), 13, "alarms.rules[0].sat_seconds.budget", "missing"},
		{"sat_seconds unknown key", rule("      below: 90\n      sat_seconds: {budget: 25, limit: 3}\n"), 13, "alarms.rules[0].sat_seconds.limit", "unknown key (known: budget, violations, window)"},
		{"duplicate rule name", rule("      below: 90\n    - name: r1\n      metric: spo2\n      below: 85\n      priority: high\n"), 13, "alarms.rules[1].name", `duplicate rule name "r1" (also alarms.rules[0], line 9)`},
		{"rule route unknown", rule("      below: 90\n      route: pager\n"), 13, "alarms.rules[0].route", `no route is named "pager"`},

		// channels
		{"channels not a list", head + "notify:\n  channels: {}\n", 8, "notify.channels", "expected a list of channels"},
		{"unknown notify key", head + "notify:\n  channel: []\n", 8, "notify.channel", "unknown key (known: channels, routes)"},
		{"channel bad name", head + "notify:\n  channels:\n    - name: Nurses Phone\n      type: exec\n      command: [/bin/true]\n", 9, "notify.channels[0].name", "invalid channel name"},
		{"channel missing name", head + "notify:\n  channels:\n    - type: exec\n      command: [/bin/true]\n", 9, "notify.channels[0].name", "missing"},
		{"channel missing type", head + "notify:\n  channels:\n    - name: x\n", 9, "notify.channels[0].type", "missing; one of ntfy, pushover, webhook, alertmanager, email, exec"},
		{"channel unknown type", head + "notify:\n  channels:\n    - name: x\n      type: pager\n", 10, "notify.channels[0].type", `unknown channel type "pager"`},
		{"email without smarthost", head + "notify:\n  channels:\n    - name: x\n      type: email\n      from: vigil@clinic.example\n      to: [nurses@clinic.example]\n", 9, "notify.channels[0].smarthost", "host:port"},
		{"email bad from", head + "notify:\n  channels:\n    - name: x\n      type: email\n      smarthost: mail.clinic.example:587\n      from: not an address\n      to: [nurses@clinic.example]\n", 12, "notify.channels[0].from", ""},
		{"email tls none remote", head + "notify:\n  channels:\n    - name: x\n      type: email\n      smarthost: mail.clinic.example:25\n      from: vigil@clinic.example\n      to: [nurses@clinic.example]\n      tls: none\n", 14, "notify.channels[0].tls", ""},
		{"channel key of another type", hook("      token_file: /etc/hostname\n"), 13, "notify.channels[0].token_file", "unknown key (known: name, type, url, secret_file, timeout) for a webhook channel"},
		{"duplicate channel name", hook("    - name: hook\n      type: exec\n      command: [/bin/true]\n"), 13, "notify.channels[1].name", `duplicate channel name "hook" (also notify.channels[0], line 9)`},
		{"channel secret missing", head + "notify:\n  channels:\n    - name: hook\n      type: webhook\n      url: https://h.example/x\n      secret_file: /nonexistent/webhook.secret\n", 12, "notify.channels[0].secret_file", "/nonexistent/webhook.secret"},
		{"channel secret required", head + "notify:\n  channels:\n    - name: hook\n      type: webhook\n      url: https://h.example/x\n", 9, "notify.channels[0].secret_file", ""},
		{"pushover key malformed", head + "notify:\n  channels:\n    - name: po\n      type: pushover\n      token_file: " + dir + "/webhook.secret\n      user_key_file: " + dir + "/pushover.user\n", 11, "notify.channels[0].token_file", "does not hold a Pushover key"},
		{"ntfy bad url", head + "notify:\n  channels:\n    - name: n\n      type: ntfy\n      url: ftp://x/y\n", 11, "notify.channels[0].url", ""},
		{"alertmanager half credentials", head + "notify:\n  channels:\n    - name: am\n      type: alertmanager\n      url: http://127.0.0.1:9093\n      username_file: /etc/hostname\n", 12, "notify.channels[0].username_file", "username_file and password_file go together"},
		{"exec command not found", head + "notify:\n  channels:\n    - name: x\n      type: exec\n      command: [/nonexistent/vigil-page]\n", 11, "notify.channels[0].command", "command"},
		{"channel timeout no unit", hook("      timeout: 5\n"), 13, "notify.channels[0].timeout", "has no unit"},

		// routes
		{"route unknown channel", hook("  routes:\n    - priorities: [high]\n      channels: [hook, pager]\n"), 15, "notify.routes[0].channels[1]", `no channel is named "pager" (channels: hook)`},
		{"route bad priority", hook("  routes:\n    - priorities: [high, urgent]\n      channels: [hook]\n"), 14, "notify.routes[0].priorities[1]", `invalid priority "urgent"`},
		{"route repeated priority", hook("  routes:\n    - priorities: [high, high]\n      channels: [hook]\n"), 14, "notify.routes[0].priorities[1]", "listed twice"},
		{"route no channels", hook("  routes:\n    - priorities: [high]\n"), 14, "notify.routes[0].channels", "a route sends to at least one channel"},
		{"route unreachable", hook("  routes:\n    - channels: [hook]\n"), 14, "notify.routes[0]", "neither priorities nor a name"},
		{"route then unknown", hook("  routes:\n    - priorities: [high]\n      channels: [hook]\n      escalate_after: 30s\n      then: boss\n"), 17, "notify.routes[0].then", `no route is named "boss"`},
		{"route then without escalate_after", hook("  routes:\n    - priorities: [high]\n      channels: [hook]\n      then: boss\n    - name: boss\n      channels: [hook]\n"), 16, "notify.routes[0].escalate_after", "must be above 0"},
		{"route escalate_after without then", hook("  routes:\n    - priorities: [high]\n      channels: [hook]\n      escalate_after: 30s\n"), 16, "notify.routes[0].then", "escalate_after needs then"},
		{"route cycle", hook("  routes:\n    - name: a\n      channels: [hook]\n      escalate_after: 30s\n      then: b\n    - name: b\n      channels: [hook]\n      escalate_after: 30s\n      then: a\n"), 17, "notify.routes[0].then", "escalation loops back: a -> b -> a"},
		{"route self cycle", hook("  routes:\n    - name: a\n      priorities: [low]\n      channels: [hook]\n      escalate_after: 30s\n      then: a\n"), 18, "notify.routes[0].then", "escalation loops back: a -> a"},
		{"duplicate route name", hook("  routes:\n    - name: a\n      channels: [hook]\n    - name: a\n      channels: [hook]\n"), 16, "notify.routes[1].name", `duplicate route name "a"`},
		{"route unknown key", hook("  routes:\n    - name: a\n      channels: [hook]\n      after: 1m\n"), 16, "notify.routes[0].after", "unknown key (known: name, priorities, channels, escalate_after, then, repeat_interval)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ps := parse(t, c.src)
			if len(ps) != 1 {
				t.Fatalf("want 1 problem, got %d:\n%v", len(ps), ps)
			}
			p := ps[0]
			if p.File != "vigil.yaml" || p.Line != c.line || p.Key != c.key || !strings.Contains(p.Msg, c.msg) {
				t.Errorf("got  %s (line %d, key %q)\nwant line %d, key %q, message containing %q", p.Error(), p.Line, p.Key, c.line, c.key, c.msg)
			}
			if strings.Contains(p.Error(), "hmac-key-for-tests") || strings.Contains(p.Error(), "azGDORePK8") {
				t.Errorf("message echoes a secret: %s", p.Error())
			}
		})
	}
}

// The example config's rules are the defaults, value for value: the file
// documents what an empty alarms: section means.
func TestExampleAlarms(t *testing.T) {
	cfg, err := Load("../../configs/vigil.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := alarm.DefaultRules()
	if len(cfg.Alarms.Rules) != len(def) {
		t.Fatalf("example has %d rules, defaults %d", len(cfg.Alarms.Rules), len(def))
	}
	for i, got := range cfg.Alarms.Rules {
		want := def[i]
		if got.Latches() != want.Latches() {
			t.Errorf("rule %s latches %v, default %v", got.Name, got.Latches(), want.Latches())
		}
		got.Latching, want.Latching = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("example rule %d = %+v, default %+v", i, got, want)
		}
	}
	if cfg.Alarms.PauseMax != DefaultPauseMax {
		t.Errorf("example pause_max = %v", cfg.Alarms.PauseMax)
	}
	data, err := os.ReadFile("../../configs/vigil.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys := [][]string{alarmsKeys, ackLinksKeys, ruleKeys, satSecondsKeys, notifyKeys, routeKeys}
	for _, k := range channelKeys {
		keys = append(keys, k)
	}
	for _, list := range keys {
		for _, k := range list {
			if !strings.Contains(string(data), k) {
				t.Errorf("example config does not document %q", k)
			}
		}
	}
}
