package dashboards

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// The structs below follow Grafana's provisioning file format
// (grafana.com/docs/grafana/latest/administration/provisioning/): the
// keys Grafana reads, so that decoding with KnownFields refuses a typo
// Grafana would silently ignore.

type datasourcesFile struct {
	APIVersion        int               `yaml:"apiVersion"`
	DeleteDatasources []datasourceRef   `yaml:"deleteDatasources"`
	Prune             bool              `yaml:"prune"`
	Datasources       []datasourceEntry `yaml:"datasources"`
}

type datasourceRef struct {
	Name  string `yaml:"name"`
	OrgID int    `yaml:"orgId"`
}

type datasourceEntry struct {
	Name            string            `yaml:"name"`
	Type            string            `yaml:"type"`
	UID             string            `yaml:"uid"`
	Access          string            `yaml:"access"`
	OrgID           int               `yaml:"orgId"`
	URL             string            `yaml:"url"`
	User            string            `yaml:"user"`
	BasicAuth       bool              `yaml:"basicAuth"`
	BasicAuthUser   string            `yaml:"basicAuthUser"`
	WithCredentials bool              `yaml:"withCredentials"`
	IsDefault       bool              `yaml:"isDefault"`
	Version         int               `yaml:"version"`
	Editable        bool              `yaml:"editable"`
	JSONData        prometheusOptions `yaml:"jsonData"`
	SecureJSONData  map[string]string `yaml:"secureJsonData"`
}

// prometheusOptions are the Prometheus data source's jsonData keys.
type prometheusOptions struct {
	TimeInterval        string `yaml:"timeInterval"`
	QueryTimeout        string `yaml:"queryTimeout"`
	HTTPMethod          string `yaml:"httpMethod"`
	PrometheusType      string `yaml:"prometheusType"`
	PrometheusVersion   string `yaml:"prometheusVersion"`
	CacheLevel          string `yaml:"cacheLevel"`
	IncrementalQuerying bool   `yaml:"incrementalQuerying"`
	ManageAlerts        bool   `yaml:"manageAlerts"`
	TLSAuth             bool   `yaml:"tlsAuth"`
	TLSAuthWithCACert   bool   `yaml:"tlsAuthWithCACert"`
	TLSSkipVerify       bool   `yaml:"tlsSkipVerify"`
}

type dashboardsFile struct {
	APIVersion int                 `yaml:"apiVersion"`
	Providers  []dashboardProvider `yaml:"providers"`
}

type dashboardProvider struct {
	Name                  string `yaml:"name"`
	OrgID                 int    `yaml:"orgId"`
	Folder                string `yaml:"folder"`
	FolderUID             string `yaml:"folderUid"`
	Type                  string `yaml:"type"`
	DisableDeletion       bool   `yaml:"disableDeletion"`
	AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
	UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
	Options               struct {
		Path                      string `yaml:"path"`
		FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
	} `yaml:"options"`
}

func decodeYAMLStrict(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := strictYAML(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func strictYAML(raw []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(v)
}

const (
	datasourcesYAML = "provisioning/datasources/vigil.yaml"
	dashboardsYAML  = "provisioning/dashboards/vigil.yaml"
)

// TestProvisioningDatasource: the data source file decodes strictly and
// creates the data source every panel queries.
func TestProvisioningDatasource(t *testing.T) {
	var f datasourcesFile
	decodeYAMLStrict(t, datasourcesYAML, &f)
	if f.APIVersion != 1 || len(f.Datasources) != 1 {
		t.Fatalf("apiVersion %d, %d data sources; want 1 and 1", f.APIVersion, len(f.Datasources))
	}
	ds := f.Datasources[0]
	if ds.UID != DatasourceUID || ds.Type != "prometheus" || ds.Access != "proxy" || ds.URL == "" || ds.Name == "" {
		t.Errorf("data source %+v: want uid %s, type prometheus, access proxy, a name and a url", ds, DatasourceUID)
	}
	// Grafana's $__rate_interval is at least four scrape intervals; it
	// must know the vitals' 5 s (configs/prometheus).
	if d, err := time.ParseDuration(ds.JSONData.TimeInterval); err != nil || d != 5*time.Second {
		t.Errorf("jsonData.timeInterval %q, want 5s", ds.JSONData.TimeInterval)
	}
}

// TestProvisioningDashboards: the provider file decodes strictly and
// loads files from the folder the README tells the installer to use.
func TestProvisioningDashboards(t *testing.T) {
	var f dashboardsFile
	decodeYAMLStrict(t, dashboardsYAML, &f)
	if f.APIVersion != 1 || len(f.Providers) != 1 {
		t.Fatalf("apiVersion %d, %d providers; want 1 and 1", f.APIVersion, len(f.Providers))
	}
	p := f.Providers[0]
	if p.Type != "file" || !filepath.IsAbs(p.Options.Path) || p.Name == "" {
		t.Errorf("provider %+v: want type file, a name and an absolute path", p)
	}
	if p.AllowUIUpdates {
		t.Error("allowUiUpdates: edits in Grafana would diverge from the committed files")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{p.Options.Path, "/etc/grafana/provisioning/dashboards/", "/etc/grafana/provisioning/datasources/", DatasourceUID} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md does not mention %s", want)
		}
	}
}

// TestStrictYAMLRefusesTypos: the strict decoding above can fail.
func TestStrictYAMLRefusesTypos(t *testing.T) {
	for _, bad := range []string{
		"apiVersion: 1\ndatasources:\n  - name: x\n    uid: y\n    typ: prometheus\n",
		"apiVersion: 1\ndatasources:\n  - name: x\n    jsonData: {timeIntervall: 5s}\n",
		"apiVersion: 1\nproviders:\n  - name: x\n    options: {pth: /x}\n",
	} {
		var v any = &datasourcesFile{}
		if strings.Contains(bad, "providers") {
			v = &dashboardsFile{}
		}
		if err := strictYAML([]byte(bad), v); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
