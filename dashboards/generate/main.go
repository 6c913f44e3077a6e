// Command generate writes Vigil's Grafana dashboards to dashboards/json.
//
//	go run ./dashboards/generate                     # the shipped files, alarm.DefaultRules
//	go run ./dashboards/generate -config vigil.yaml -out /var/lib/grafana/dashboards/vigil
//
// With -config the colours and limit lines follow that config's
// alarms.rules, for a clinic whose medical director set other limits.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/dashboards"
	// A config names its devices' drivers; parsing checks them.
	_ "github.com/vigil-monitor/vigil/drivers/all"
)

func main() {
	out := flag.String("out", filepath.Join("dashboards", "json"), "directory the dashboard JSON files are written to")
	configFile := flag.String("config", "", "a vigil config whose alarms.rules set the limits (default: alarm.DefaultRules)")
	flag.Parse()
	if err := run(*out, *configFile); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

func run(out, configFile string) error {
	rules := alarm.DefaultRules()
	if configFile != "" {
		data, err := os.ReadFile(configFile)
		if err != nil {
			return err
		}
		cfg, err := config.Parse(configFile, data)
		if err != nil {
			return err
		}
		rules = cfg.Alarms.Rules
	}
	files, err := dashboards.Build(rules)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		data, err := dashboards.Render(f.Dashboard)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if err := os.WriteFile(filepath.Join(out, f.Name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
