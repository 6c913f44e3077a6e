package config

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Config is the whole configuration file.
type Config struct {
	// File is the path the config was loaded from ("" when built in code).
	File string `yaml:"-"`

	Site    string   `yaml:"site"` // required, [a-z0-9-]
	Room    string   `yaml:"room"` // required, [a-z0-9-]
	Devices []Device `yaml:"devices"`
	MQTT    MQTT     `yaml:"mqtt"`
	HTTP    HTTP     `yaml:"http"`
	Metrics Metrics  `yaml:"metrics"`
	// Alarms and Notify are described in alarms.go.
	Alarms AlarmsConfig `yaml:"-"`
	Notify NotifyConfig `yaml:"-"`
	// Store and Session are described in store.go.
	Store   StoreConfig   `yaml:"-"`
	Session SessionConfig `yaml:"-"`
}

// Device is one bedside device.
type Device struct {
	ID     string `yaml:"id"`     // required, unique, [a-z0-9-]
	Driver string `yaml:"driver"` // registry name, see drivers.Names()
	Port   string `yaml:"port"`   // a path (/dev/ttyUSB0, /dev/serial/by-id/...), or
	USB    *USB   `yaml:"usb"`    // a USB identity, exactly one of the two

	// Optional overrides of the driver's default link settings; 0/"" = default.
	Baud     int    `yaml:"baud"`
	DataBits int    `yaml:"data_bits"`
	Parity   string `yaml:"parity"`    // none | odd | even | mark | space
	StopBits string `yaml:"stop_bits"` // 1 | 1.5 | 2

	// StaleAfter overrides how long a value of this device stays current;
	// 0 = the metric default (Metrics.StaleAfter for continuous metrics).
	StaleAfter time.Duration `yaml:"stale_after"`

	// SilentAfter overrides how long an open connection may go without a
	// well-formed frame before the device counts as silent; 0 = the driver's
	// limit (Masimo 5s, Contec 3s, SunTech 15s, HL7 30s).
	SilentAfter time.Duration `yaml:"silent_after"`

	// NIBP schedules automatic blood-pressure measurements on devices that
	// take commands; nil = on demand only.
	NIBP *NIBP `yaml:"nibp"`

	// Options are the driver-specific keys (everything not listed above),
	// checked by the driver's Validate. Values are as YAML decodes them into
	// any: string, int, float64, bool, []any, map[string]any. Never nil after
	// Load.
	Options drivers.Options `yaml:"-"`

	// Line is the config line of this device entry, for later messages.
	Line int `yaml:"-"`
}

// NIBP is a device's automatic measurement schedule.
type NIBP struct {
	// Interval between automatic measurements; the first starts one interval
	// after the device connects, and none starts while one is running.
	Interval time.Duration `yaml:"interval"`
}

// USB identifies a USB-serial device independent of its /dev name.
type USB struct {
	VID    string `yaml:"vid"`    // 4 hex digits, required
	PID    string `yaml:"pid"`    // 4 hex digits, required
	Serial string `yaml:"serial"` // optional; needed when two identical adapters are plugged in
}

// MQTT configures the broker connection.
type MQTT struct {
	URL string `yaml:"url"` // embedded | tcp:// mqtt:// ssl:// tls:// mqtts:// ws:// wss://; default embedded
	// FailoverURLs are the further brokers when url is a list (the first
	// element is URL).
	FailoverURLs []string `yaml:"-"`
	Listen       string   `yaml:"listen"`    // embedded broker address; default 127.0.0.1:1883
	ClientID     string   `yaml:"client_id"` // default "vigil-<site>-<room>"
	Username     string   `yaml:"username"`
	// PasswordFile, CAFile, CertFile and KeyFile are resolved against the
	// config file's directory when relative; after Load they hold the path
	// that was actually read.
	PasswordFile string        `yaml:"password_file"`
	CAFile       string        `yaml:"ca_file"`
	CertFile     string        `yaml:"cert_file"`
	KeyFile      string        `yaml:"key_file"`
	TopicPrefix  string        `yaml:"topic_prefix"` // default "vigil"
	KeepAlive    time.Duration `yaml:"keep_alive"`   // default 10s
	// Password is read from PasswordFile at load; never logged or printed:
	// MQTT's String, GoString and LogValue leave it out, and no encoder sees it.
	Password string `yaml:"-" json:"-"`
}

// String describes the broker settings without the password, so that
// fmt.Print of an MQTT or a Config (fmt calls String on nested fields) never
// shows it.
func (m MQTT) String() string {
	return fmt.Sprintf("{url:%s listen:%s client_id:%s username:%s password_file:%s password_set:%t ca_file:%s cert_file:%s key_file:%s topic_prefix:%s keep_alive:%s}",
		m.URL, m.Listen, m.ClientID, m.Username, m.PasswordFile, m.Password != "", m.CAFile, m.CertFile, m.KeyFile, m.TopicPrefix, m.KeepAlive)
}

// GoString covers %#v, which would otherwise print every field.
func (m MQTT) GoString() string { return "config.MQTT" + m.String() }

// LogValue is what slog records for an MQTT: everything but the password.
func (m MQTT) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", m.URL),
		slog.String("listen", m.Listen),
		slog.String("client_id", m.ClientID),
		slog.String("username", m.Username),
		slog.String("password_file", m.PasswordFile),
		slog.Bool("password_set", m.Password != ""),
		slog.String("ca_file", m.CAFile),
		slog.String("cert_file", m.CertFile),
		slog.String("key_file", m.KeyFile),
		slog.String("topic_prefix", m.TopicPrefix),
		slog.Duration("keep_alive", m.KeepAlive),
	)
}

// HTTP configures the metrics, health and API listener.
type HTTP struct {
	Listen string `yaml:"listen"` // default 127.0.0.1:9817
	// WebConfigFile is a Prometheus exporter-toolkit web config (TLS and
	// basic auth, bcrypt): configs/web-config.yml. "" serves plain HTTP.
	WebConfigFile string `yaml:"web_config_file"`
}

// SecretFiles lists the files of the config that hold secrets (passwords,
// keys, tokens), for the start-up check that they are private.
func (c *Config) SecretFiles() []string {
	var out []string
	add := func(p string) {
		if p != "" {
			out = append(out, p)
		}
	}
	add(c.MQTT.PasswordFile)
	add(c.MQTT.KeyFile)
	add(c.HTTP.WebConfigFile)
	if c.Alarms.AckLinks != nil {
		add(c.Alarms.AckLinks.KeyFile)
	}
	for _, ch := range c.Notify.Channels {
		switch {
		case ch.NTFY != nil:
			add(ch.NTFY.TokenFile)
			add(ch.NTFY.PasswordFile)
		case ch.Pushover != nil:
			add(ch.Pushover.TokenFile)
			add(ch.Pushover.UserKeyFile)
		case ch.Webhook != nil:
			add(ch.Webhook.SecretFile)
		case ch.Alertmanager != nil:
			add(ch.Alertmanager.UsernameFile)
			add(ch.Alertmanager.PasswordFile)
		case ch.Email != nil:
			add(ch.Email.PasswordFile)
		}
	}
	return out
}

// Metrics configures the Prometheus exposition.
type Metrics struct {
	// StaleAfter is how long a continuous metric's value stays in the scrape
	// after its last reading; default 10s.
	StaleAfter time.Duration `yaml:"stale_after"`
	// NIBPStaleAfter is how long a discrete (NIBP) value stays in the scrape
	// after its measurement; default 20m.
	NIBPStaleAfter time.Duration `yaml:"nibp_stale_after"`
}

// Device returns the configured device called id.
func (c *Config) Device(id string) (*Device, bool) {
	for i := range c.Devices {
		if c.Devices[i].ID == id {
			return &c.Devices[i], true
		}
	}
	return nil, false
}

// LinkFor returns the serial settings to open d's port with: the driver's
// defaults def, with every setting the config gives laid over them.
func (d *Device) LinkFor(def drivers.Link) drivers.Link {
	l := def
	if d.Baud != 0 {
		l.Baud = d.Baud
	}
	if d.DataBits != 0 {
		l.DataBits = d.DataBits
	}
	if d.Parity != "" {
		l.Parity = d.Parity
	}
	if d.StopBits != "" {
		l.StopBits = d.StopBits
	}
	return l
}

// Defaults documented in configs/vigil.yaml and README.md.
const (
	DefaultMQTTURL        = "embedded"
	DefaultMQTTListen     = "127.0.0.1:1883"
	DefaultTopicPrefix    = "vigil"
	DefaultKeepAlive      = 10 * time.Second
	DefaultHTTPListen     = "127.0.0.1:9817"
	DefaultStaleAfter     = 10 * time.Second
	DefaultNIBPStaleAfter = 20 * time.Minute
)
