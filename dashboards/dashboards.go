// Package dashboards builds Vigil's Grafana dashboards with the Grafana
// Foundation SDK. The JSON files in json/ are the product: Grafana loads
// them through the provisioning files in provisioning/. They are generated
// (go run ./dashboards/generate) and a test fails when the committed files
// differ from what Build gives, so the two cannot drift apart.
//
// The colours of the vital-sign panels and the limit lines of the trends
// come from the alarm rules (alarm.DefaultRules, the table of clinical.md
// 4), not from numbers written here: a clinic whose medical director set
// other limits regenerates with its own rules (generate -config).
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// DatasourceUID is the uid of the Prometheus data source every panel
// queries; provisioning/datasources/vigil.yaml creates it.
const DatasourceUID = "vigil-prometheus"

// tag marks Vigil's dashboards; the dashboards link to each other by it.
const tag = "vigil"

// File is one dashboard and the file name it is committed under in json/.
type File struct {
	Name      string // e.g. "room.json"
	Dashboard dashboard.Dashboard
}

// Build builds every dashboard with the limits of rules (alarm.DefaultRules
// for the shipped files).
func Build(rules []alarm.Rule) ([]File, error) {
	builders := []struct {
		name  string
		build func([]alarm.Rule) (dashboard.Dashboard, error)
	}{
		{"room.json", roomDashboard},
		{"clinic-overview.json", overviewDashboard},
		{"session-review.json", sessionDashboard},
		{"agent-health.json", healthDashboard},
	}
	files := make([]File, 0, len(builders))
	for _, b := range builders {
		d, err := b.build(rules)
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", b.name, err)
		}
		files = append(files, File{Name: b.name, Dashboard: d})
	}
	return files, nil
}

// Render is a dashboard's committed form: indented JSON and a final
// newline, stable from run to run (encoding/json sorts map keys).
func Render(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	// PromQL's comparison operators stay readable in the files.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
