package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreAndSessionDefaults(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	cfg := mustParse(t, head)
	want := StoreConfig{Path: "/var/lib/vigil/vigil.db", Retention: DefaultRetention, OutboxMaxMessages: DefaultOutboxMaxMessages, OutboxMaxAge: DefaultOutboxMaxAge}
	if cfg.Store != want {
		t.Errorf("store defaults %+v, want %+v", cfg.Store, want)
	}
	wantSession := SessionConfig{PredoseSystolic: 140, PredoseDiastolic: 90, FirstNIBPAfterDose: 40 * time.Minute,
		NIBPInterval: 15 * time.Minute, NIBPGrace: 5 * time.Minute, MinObservation: 2 * time.Hour, CheckTolerancePercent: 20}
	if cfg.Session != wantSession {
		t.Errorf("session defaults %+v, want %+v", cfg.Session, wantSession)
	}
	t.Setenv("STATE_DIRECTORY", "/var/lib/vigil-test")
	if got := mustParse(t, head).Store.Path; got != "/var/lib/vigil-test/vigil.db" {
		t.Errorf("store path under systemd %q", got)
	}
}

func TestStoreAndSessionKeys(t *testing.T) {
	cfg := mustParse(t, head+`store:
  path: /srv/vigil/room.db
  retention: 720h
  outbox_max_messages: 5000
  outbox_max_age: 48h
  max_size_mb: 512
  sync: full
session:
  predose_bp_limit: 160/100
  first_nibp_after_dose: 30m
  nibp_interval: 10m
  nibp_grace: 3m
  min_observation: 90m
  check_tolerance_percent: 15
`)
	want := StoreConfig{Path: "/srv/vigil/room.db", Retention: 720 * time.Hour, OutboxMaxMessages: 5000, OutboxMaxAge: 48 * time.Hour, MaxSizeMB: 512, SyncFull: true}
	if cfg.Store != want {
		t.Errorf("store %+v, want %+v", cfg.Store, want)
	}
	wantSession := SessionConfig{PredoseSystolic: 160, PredoseDiastolic: 100, FirstNIBPAfterDose: 30 * time.Minute,
		NIBPInterval: 10 * time.Minute, NIBPGrace: 3 * time.Minute, MinObservation: 90 * time.Minute, CheckTolerancePercent: 15}
	if cfg.Session != wantSession {
		t.Errorf("session %+v, want %+v", cfg.Session, wantSession)
	}
}

func TestStoreAndSessionProblems(t *testing.T) {
	cases := []struct {
		name, src string
		line      int
		key, msg  string
	}{
		{"store not a mapping", head + "store: /x.db\n", 7, "store", "expected a mapping with path"},
		{"store unknown key", head + "store:\n  file: /x.db\n", 8, "store.file", "unknown key (known: path, retention"},
		{"store empty path", head + "store:\n  path: \"\"\n", 8, "store.path", "empty; omit the key"},
		{"retention short", head + "store:\n  retention: 1h\n", 8, "store.retention", "at least 24h"},
		{"outbox small", head + "store:\n  outbox_max_messages: 10\n", 8, "store.outbox_max_messages", "at least 1000"},
		{"outbox age short", head + "store:\n  outbox_max_age: 5m\n", 8, "store.outbox_max_age", "at least 1h"},
		{"max size small", head + "store:\n  max_size_mb: 1\n", 8, "store.max_size_mb", "at least 16"},
		{"sync unknown", head + "store:\n  sync: always\n", 8, "store.sync", "use normal"},
		{"bp no slash", head + "session:\n  predose_bp_limit: 140\n", 8, "session.predose_bp_limit", "systolic/diastolic"},
		{"bp inverted", head + "session:\n  predose_bp_limit: 90/140\n", 8, "session.predose_bp_limit", "below the systolic"},
		{"interval zero", head + "session:\n  nibp_interval: 0s\n", 8, "session.nibp_interval", "above 0"},
		{"tolerance", head + "session:\n  check_tolerance_percent: 150\n", 8, "session.check_tolerance_percent", "at most 100"},
		{"grace too long for the interval", head + "session:\n  nibp_interval: 10m\n  nibp_grace: 6m\n", 9, "session.nibp_grace", "less than half of NIBPInterval"},
		{"interval too short", head + "session:\n  nibp_interval: 30s\n  nibp_grace: 5s\n", 8, "session.nibp_interval", "outside [1m, 24h]"},
		{"session unknown", head + "session:\n  dose_route: iv\n", 8, "session.dose_route", "unknown key (known: predose_bp_limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ps := parse(t, c.src)
			if ps == nil {
				t.Fatal("no problem reported")
			}
			found := false
			for _, p := range ps {
				if p.Line == c.line && p.Key == c.key && strings.Contains(p.Msg, c.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("got %v\nwant line %d, key %q, message containing %q", ps, c.line, c.key, c.msg)
			}
		})
	}
}

func TestExampleDocumentsStoreAndSession(t *testing.T) {
	data, err := os.ReadFile("../../configs/vigil.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(append([]string{"store:", "session:"}, storeKeys...), sessionKeys...) {
		if !strings.Contains(string(data), k) {
			t.Errorf("configs/vigil.yaml does not document %q", k)
		}
	}
}

func TestMQTTSeveralBrokers(t *testing.T) {
	cfg := mustParse(t, head+"mqtt:\n  url: [ssl://broker-a.clinic.lan:8883, ssl://broker-b.clinic.lan:8883]\n")
	if cfg.MQTT.URL != "ssl://broker-a.clinic.lan:8883" || len(cfg.MQTT.FailoverURLs) != 1 || cfg.MQTT.FailoverURLs[0] != "ssl://broker-b.clinic.lan:8883" {
		t.Errorf("url %q, failover %q", cfg.MQTT.URL, cfg.MQTT.FailoverURLs)
	}
	for src, msg := range map[string]string{
		"mqtt:\n  url: []\n":                                   "empty list",
		"mqtt:\n  url: [embedded, tcp://b:1883]\n":             "embedded cannot be one of several",
		"mqtt:\n  url: [ssl://a:8883, tcp://b:1883]\n":         "all brokers must use TLS or none",
		"mqtt:\n  url: [tcp://a:1883, \"tcp://u:p@b:1883\"]\n": "must not contain a user name or password",
	} {
		_, ps := parse(t, head+src)
		if ps == nil || !strings.Contains(ps.Error(), msg) || !strings.Contains(ps.Error(), "mqtt.url") {
			t.Errorf("%q: %v, want %q", src, ps, msg)
		}
		if strings.Contains(ps.Error(), "u:p@") {
			t.Errorf("the error echoes credentials: %v", ps)
		}
	}
}

func TestWebConfigFileAndSecretFiles(t *testing.T) {
	dir := t.TempDir()
	web := filepath.Join(dir, "web-config.yml")
	os.WriteFile(web, []byte("basic_auth_users: {}\n"), 0o600)
	cfg := mustParse(t, head+"http:\n  web_config_file: "+web+"\n")
	if cfg.HTTP.WebConfigFile != web {
		t.Errorf("web_config_file %q", cfg.HTTP.WebConfigFile)
	}
	if files := cfg.SecretFiles(); len(files) != 1 || files[0] != web {
		t.Errorf("secret files %v", files)
	}
	_, ps := parse(t, head+"http:\n  web_config_file: /nonexistent/web.yml\n")
	if ps == nil || !strings.Contains(ps.Error(), "http.web_config_file") || !strings.Contains(ps.Error(), "cannot read /nonexistent/web.yml") {
		t.Errorf("missing web config: %v", ps)
	}
}
