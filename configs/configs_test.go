// Package configs_test checks the example Prometheus and Alertmanager files
// of Vigil's independent alerting path with the tools that will load them:
// promtool (Debian package prometheus) and amtool (prometheus-alertmanager).
// CI installs both, so there a missing tool is a failure, not a skip.
package configs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	prometheusConfig   = "prometheus/prometheus.yml"
	rulesFile          = "prometheus/vigil-rules.yml"
	rulesTestFile      = "prometheus/vigil-rules.test.yml"
	alertmanagerConfig = "alertmanager/alertmanager.yml"
)

// tool returns the path of a command-line tool, failing the test when CI is
// set and the tool is missing, skipping it otherwise.
func tool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found and CI is set: install the Debian package %s: %v", name, debianPackage, err)
		}
		t.Skipf("%s not installed (Debian package %s)", name, debianPackage)
	}
	return path
}

// run runs a tool and fails the test with its output when it exits non-zero.
func run(t *testing.T, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command(path, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// missingRuleFiles returns the rule_files patterns of the Prometheus config
// that match no file, resolved like Prometheus does: relative to the
// config's directory.
func missingRuleFiles(t *testing.T, config string) []string {
	t.Helper()
	raw, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", config, err)
	}
	var missing []string
	for _, pattern := range c.RuleFiles {
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(filepath.Dir(config), pattern)
		}
		matches, err := filepath.Glob(pattern)
		if err != nil || len(matches) == 0 {
			missing = append(missing, pattern)
		}
	}
	return missing
}

// TestPromtoolCheckConfig checks the scrape config and, through it, the rule
// files it names. When a named file does not exist here (a site's copy
// pointing at /etc/prometheus), promtool would fail on the path rather than
// the content, so only the rules are checked.
func TestPromtoolCheckConfig(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	if missing := missingRuleFiles(t, prometheusConfig); len(missing) > 0 {
		t.Logf("%s names rule files that do not exist here (%s): checking the rules only", prometheusConfig, strings.Join(missing, ", "))
		run(t, promtool, "check", "rules", rulesFile)
		return
	}
	run(t, promtool, "check", "config", prometheusConfig)
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	out := run(t, promtool, "check", "rules", rulesFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules did not report success:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	run(t, promtool, "test", "rules", rulesTestFile)
}

func TestAmtoolCheckConfig(t *testing.T) {
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	run(t, amtool, "check-config", alertmanagerConfig)
}

// ruleFile is the part of a Prometheus rule file this test reads.
type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// ruleTestFile is the part of a promtool unit-test file this test reads.
type ruleTestFile struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func decodeYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestRulesConventions holds every alert to the conventions the README
// promises and promtool cannot check: a severity Alertmanager routes on,
// the matching priority, the IEC 60601-1-8 text marker leading the summary
// (clinical.md section 1), and unit tests where the alert fires and where
// it does not.
func TestRulesConventions(t *testing.T) {
	var rules ruleFile
	decodeYAML(t, rulesFile, &rules)
	var tests ruleTestFile
	decodeYAML(t, rulesTestFile, &tests)

	fires := map[string]bool{}
	quiet := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}

	priorityOf := map[string]string{"critical": "high", "warning": "medium", "info": "low"}
	markerOf := map[string]string{"critical": "*** ", "warning": "** ", "info": "* "}
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			names = append(names, r.Alert)
			sev := r.Labels["severity"]
			if _, ok := priorityOf[sev]; !ok {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, sev)
				continue
			}
			if got := r.Labels["priority"]; got != priorityOf[sev] {
				t.Errorf("%s: priority %q with severity %s, want %q", r.Alert, got, sev, priorityOf[sev])
			}
			summary := r.Annotations["summary"]
			// The marker includes its trailing space, so "** " cannot match
			// a "*** " summary.
			if !strings.HasPrefix(summary, markerOf[sev]) {
				t.Errorf("%s: summary %q does not start with the %s marker %q", r.Alert, summary, sev, markerOf[sev])
			}
			if r.Annotations["description"] == "" {
				t.Errorf("%s: no description annotation", r.Alert)
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no unit test in %s where it fires", r.Alert, rulesTestFile)
			}
			// Watchdog fires unconditionally; there is no input where it
			// must stay quiet.
			if r.Alert != "Watchdog" && !quiet[r.Alert] {
				t.Errorf("%s: no unit test in %s where it stays quiet", r.Alert, rulesTestFile)
			}
		}
	}
	for _, want := range []string{
		"VigilAgentDown", "VigilAgentNotScraped", "VigilDeviceDown", "VigilVitalsStale",
		"VigilSpO2Absent", "VigilSensorOff", "VigilMQTTDisconnected",
		"VigilNotificationsFailing", "VigilFrameErrors", "Watchdog",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("%s has no alert %s", rulesFile, want)
		}
	}
}
