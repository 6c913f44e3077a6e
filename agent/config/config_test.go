package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	_ "github.com/vigil-monitor/vigil/drivers/all" // the example config names masimo-ascii
)

// Test drivers, beside the real ones.
func init() {
	noDecoder := func(drivers.Options) (drivers.Decoder, error) {
		return nil, errors.New("test driver: no decoder")
	}
	register := func(d *drivers.Driver) {
		if _, taken := drivers.Lookup(d.Name); !taken {
			drivers.Register(d)
		}
	}
	register(&drivers.Driver{
		Name:       "test-driver",
		Link:       drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"},
		NewDecoder: noDecoder,
	})
	register(&drivers.Driver{
		Name:       "test-options",
		NewDecoder: noDecoder,
		Validate: func(o drivers.Options) error {
			var errs []error
			for k, v := range o {
				switch k {
				case "mode":
					if v != "a" && v != "b" {
						errs = append(errs, fmt.Errorf("mode must be a or b, got %v", v))
					}
				case "count":
					if _, ok := v.(int); !ok {
						errs = append(errs, fmt.Errorf("count must be a whole number, got %v", v))
					}
				default:
					errs = append(errs, fmt.Errorf("unknown option %s", k))
				}
			}
			if _, ok := o["mode"]; !ok {
				errs = append(errs, errors.New("needs an option saying which mode"))
			}
			return errors.Join(errs...)
		},
	})
	register(&drivers.Driver{
		Name:       "test-panics",
		NewDecoder: noDecoder,
		Validate:   func(o drivers.Options) error { panic("driver bug") },
	})
}

// parse runs Parse under the name vigil.yaml and returns the problems, failing
// the test when the error is not a Problems.
func parse(t *testing.T, src string) (*Config, Problems) {
	t.Helper()
	cfg, err := Parse("vigil.yaml", []byte(src))
	if err == nil {
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		return cfg, nil
	}
	if cfg != nil {
		t.Errorf("Parse returned a config together with an error")
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, not Problems: %v", err, err)
	}
	if len(ps) == 0 {
		t.Fatal("Parse returned an empty Problems")
	}
	return nil, ps
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, ps := parse(t, src)
	if ps != nil {
		t.Fatalf("unexpected problems:\n%v", ps)
	}
	return cfg
}

const minimal = `site: clinic-north
room: room-1
devices:
  - id: spo2
    driver: test-driver
    port: /dev/ttyUSB0
`

func TestDefaultsApplied(t *testing.T) {
	cfg := mustParse(t, minimal)
	if cfg.File != "vigil.yaml" || cfg.Site != "clinic-north" || cfg.Room != "room-1" {
		t.Errorf("file/site/room = %q %q %q", cfg.File, cfg.Site, cfg.Room)
	}
	want := MQTT{
		URL:         DefaultMQTTURL,
		Listen:      DefaultMQTTListen,
		ClientID:    "vigil-clinic-north-room-1",
		TopicPrefix: DefaultTopicPrefix,
		KeepAlive:   DefaultKeepAlive,
	}
	if !reflect.DeepEqual(cfg.MQTT, want) {
		t.Errorf("mqtt = %v, want %v", cfg.MQTT, want)
	}
	if cfg.HTTP.Listen != DefaultHTTPListen {
		t.Errorf("http.listen = %q", cfg.HTTP.Listen)
	}
	if cfg.Metrics.StaleAfter != DefaultStaleAfter || cfg.Metrics.NIBPStaleAfter != DefaultNIBPStaleAfter {
		t.Errorf("metrics = %+v", cfg.Metrics)
	}
	if len(cfg.Devices) != 1 {
		t.Fatalf("devices = %d", len(cfg.Devices))
	}
	d := cfg.Devices[0]
	if d.ID != "spo2" || d.Driver != "test-driver" || d.Port != "/dev/ttyUSB0" || d.USB != nil || d.Line != 4 {
		t.Errorf("device = %+v", d)
	}
	if d.Baud != 0 || d.DataBits != 0 || d.Parity != "" || d.StopBits != "" || d.StaleAfter != 0 {
		t.Errorf("link overrides should stay unset: %+v", d)
	}
	if d.Options == nil || len(d.Options) != 0 {
		t.Errorf("options = %#v, want empty non-nil", d.Options)
	}
}

// The defaults themselves must pass validation, or a config that spells
// them out would be refused.
func TestDefaultsAreValid(t *testing.T) {
	mustParse(t, minimal+fmt.Sprintf(`mqtt:
  url: %s
  listen: %s
  topic_prefix: %s
  keep_alive: %s
http:
  listen: %s
metrics:
  stale_after: %s
  nibp_stale_after: %s
`, DefaultMQTTURL, DefaultMQTTListen, DefaultTopicPrefix, DefaultKeepAlive, DefaultHTTPListen, DefaultStaleAfter, DefaultNIBPStaleAfter))
}

func TestEverySettingDecoded(t *testing.T) {
	cfg := mustParse(t, `site: s1
room: r-2
devices:
  - id: spo2
    driver: test-driver
    usb: {vid: 10C4, pid: "EA60", serial: 0001}
    baud: 19200
    data_bits: 7
    parity: odd
    stop_bits: 2
    stale_after: 30s
  - id: nibp
    driver: test-options
    port: /dev/serial/by-id/usb-FTDI-if00
    stop_bits: 1.5
    mode: b
    count: 3
  - id: third
    driver: test-driver
    usb: {vid: "0403", pid: 6001}
    stop_bits: 1
mqtt:
  url: tcp://broker.example:1883
  client_id: room2-agent
  username: vigil
  topic_prefix: clinic/vitals
  keep_alive: 1m
http:
  listen: ":9817"
metrics:
  stale_after: 15s
  nibp_stale_after: 1h
`)
	d0, d1, d2 := cfg.Devices[0], cfg.Devices[1], cfg.Devices[2]
	if *d0.USB != (USB{VID: "10c4", PID: "ea60", Serial: "0001"}) {
		t.Errorf("usb = %+v (vid/pid lower-cased, serial as written)", *d0.USB)
	}
	if d0.Baud != 19200 || d0.DataBits != 7 || d0.Parity != "odd" || d0.StopBits != "2" || d0.StaleAfter != 30*time.Second {
		t.Errorf("device 0 = %+v", d0)
	}
	if d1.StopBits != "1.5" || d1.Options["mode"] != "b" || d1.Options["count"] != 3 || len(d1.Options) != 2 {
		t.Errorf("device 1 = %+v options %#v", d1, d1.Options)
	}
	if d2.USB.VID != "0403" || d2.USB.PID != "6001" || d2.StopBits != "1" || d2.Line != 18 {
		t.Errorf("device 2 = %+v usb %+v (0403 must keep its spelling, not turn octal)", d2, *d2.USB)
	}
	m := cfg.MQTT
	if m.URL != "tcp://broker.example:1883" || m.ClientID != "room2-agent" || m.Username != "vigil" ||
		m.TopicPrefix != "clinic/vitals" || m.KeepAlive != time.Minute || m.Listen != DefaultMQTTListen {
		t.Errorf("mqtt = %v", m)
	}
	if cfg.HTTP.Listen != ":9817" || cfg.Metrics.StaleAfter != 15*time.Second || cfg.Metrics.NIBPStaleAfter != time.Hour {
		t.Errorf("http %+v metrics %+v", cfg.HTTP, cfg.Metrics)
	}
}

func TestAcceptedURLs(t *testing.T) {
	for _, u := range []string{
		"embedded", "tcp://localhost:1883", "mqtt://10.0.0.5:1883", "ssl://broker:8883",
		"tls://broker:8883", "mqtts://broker:8883", "ws://broker/mqtt", "wss://broker:443/mqtt",
		"tcp://[::1]:1883", "tcp://broker:1883/",
	} {
		t.Run(u, func(t *testing.T) {
			cfg := mustParse(t, minimal+"mqtt:\n  url: "+u+"\n")
			if cfg.MQTT.URL != u {
				t.Errorf("url = %q", cfg.MQTT.URL)
			}
		})
	}
}

func TestDeviceAndLinkFor(t *testing.T) {
	cfg := mustParse(t, `site: s
room: r
devices:
  - id: a
    driver: test-driver
    port: /dev/ttyUSB0
  - id: b
    driver: test-driver
    port: /dev/ttyUSB1
    baud: 115200
    parity: even
`)
	a, ok := cfg.Device("a")
	if !ok || a.Port != "/dev/ttyUSB0" {
		t.Fatalf("Device(a) = %+v, %v", a, ok)
	}
	a.StaleAfter = time.Minute // a pointer into the config, not a copy
	if cfg.Devices[0].StaleAfter != time.Minute {
		t.Error("Device returned a copy")
	}
	if _, ok := cfg.Device("zzz"); ok {
		t.Error("Device found a device that is not configured")
	}
	def := drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}
	if got := a.LinkFor(def); got != def {
		t.Errorf("LinkFor without overrides = %+v", got)
	}
	b, _ := cfg.Device("b")
	if got, want := b.LinkFor(def), (drivers.Link{Baud: 115200, DataBits: 8, Parity: "even", StopBits: "1"}); got != want {
		t.Errorf("LinkFor = %+v, want %+v", got, want)
	}
	full := Device{Baud: 4800, DataBits: 7, Parity: "odd", StopBits: "2"}
	if got, want := full.LinkFor(def), (drivers.Link{Baud: 4800, DataBits: 7, Parity: "odd", StopBits: "2"}); got != want {
		t.Errorf("LinkFor = %+v, want %+v", got, want)
	}
}

func TestProblemRendering(t *testing.T) {
	cases := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "vigil.yaml", Line: 12, Column: 13, Key: "devices[1].driver", Msg: `unknown driver "foo"`}, `vigil.yaml:12: devices[1].driver: unknown driver "foo"`},
		{Problem{File: "vigil.yaml", Key: "site", Msg: "missing"}, "vigil.yaml: site: missing"},
		{Problem{File: "vigil.yaml", Msg: "config is empty"}, "vigil.yaml: config is empty"},
		{Problem{Line: 3, Key: "room", Msg: "x"}, "line 3: room: x"},
		{Problem{Msg: "x"}, "x"},
	}
	for _, c := range cases {
		if got := c.p.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	ps := Problems{cases[0].p, cases[1].p}
	if got, want := ps.Error(), cases[0].want+"\n"+cases[1].want; got != want {
		t.Errorf("Problems.Error() = %q, want %q", got, want)
	}
	var err error = fmt.Errorf("loading: %w", ps)
	var first Problem
	if !errors.As(err, &first) || first != cases[0].p {
		t.Errorf("errors.As(Problem) = %+v", first)
	}
	var all Problems
	if !errors.As(err, &all) || len(all) != 2 {
		t.Errorf("errors.As(Problems) = %v", all)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].File != path || !strings.Contains(ps[0].Msg, "does not exist") {
		t.Fatalf("Load(missing) = %v", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(minimal+"#"+strings.Repeat("x", maxConfigSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load(big) = %v", err)
	}
}

// The example config is the documented reference: it must load, and it must
// mention every key the schema accepts.
func TestExampleConfig(t *testing.T) {
	const path = "../../configs/vigil.yaml"
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("example config does not load:\n%v", err)
	}
	if len(cfg.Devices) != 1 {
		t.Fatalf("devices = %d", len(cfg.Devices))
	}
	d := cfg.Devices[0]
	if d.Driver != "masimo-ascii" || !strings.HasPrefix(d.Port, "/dev/serial/by-id/") || d.USB != nil {
		t.Errorf("example device = %+v", d)
	}
	if cfg.MQTT.URL != DefaultMQTTURL || cfg.MQTT.Password != "" || cfg.HTTP.Listen != DefaultHTTPListen {
		t.Errorf("example mqtt %v http %+v", cfg.MQTT, cfg.HTTP)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, keys := range [][]string{topKeys, deviceKeys, usbKeys, mqttKeys, httpKeys, metricsKeys} {
		for _, k := range keys {
			if !strings.Contains(string(data), k+":") {
				t.Errorf("example config does not document %q", k)
			}
		}
	}
}

// The real masimo-ascii driver takes no options; its refusal is pinned to the
// option it names.
func TestRealDriverOptions(t *testing.T) {
	_, ps := parse(t, "site: a\nroom: b\ndevices:\n  - id: x\n    driver: masimo-ascii\n    port: /dev/x\n    protocol: ascii2\n")
	if len(ps) != 1 || ps[0].Line != 7 || ps[0].Key != "devices[0].protocol" || !strings.HasPrefix(ps[0].Msg, "masimo-ascii takes no driver options") {
		t.Errorf("got %v", ps)
	}
}

// Bad input of any shape yields problems, never a panic.
func FuzzParse(f *testing.F) {
	f.Add(minimal)
	f.Add("devices: [{id: a, usb: {vid: *x}}]")
	f.Add("a: &x [*x]")
	f.Add("site: [\n")
	f.Add("? [a]\n: b\n")
	f.Add("<<: {site: a}\n")
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := Parse("fuzz.yaml", []byte(src))
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one", cfg, err)
		}
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %T %v is not a non-empty Problems", err, err)
			}
		}
	})
}
