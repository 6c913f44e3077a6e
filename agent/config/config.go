// Package config loads and validates Vigil's YAML configuration. Everything
// is checked at load time, so the running agent never meets an invalid value;
// every problem names the file, line and key.
package config

import (
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

	// Options are the driver-specific keys (everything not listed above),
	// checked by the driver's Validate.
	Options drivers.Options `yaml:"-"`

	// Line is the config line of this device entry, for later messages.
	Line int `yaml:"-"`
}

// USB identifies a USB-serial device independent of its /dev name.
type USB struct {
	VID    string `yaml:"vid"`    // 4 hex digits, required
	PID    string `yaml:"pid"`    // 4 hex digits, required
	Serial string `yaml:"serial"` // optional; needed when two identical adapters are plugged in
}

// MQTT configures the broker connection.
type MQTT struct {
	URL          string        `yaml:"url"`    // tcp://host:port, ssl://host:port, or "embedded"; default embedded
	Listen       string        `yaml:"listen"` // embedded broker address; default 127.0.0.1:1883
	ClientID     string        `yaml:"client_id"`
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	CAFile       string        `yaml:"ca_file"`
	CertFile     string        `yaml:"cert_file"`
	KeyFile      string        `yaml:"key_file"`
	TopicPrefix  string        `yaml:"topic_prefix"` // default "vigil"
	KeepAlive    time.Duration `yaml:"keep_alive"`   // default 10s
	// Password is read from PasswordFile at load; never logged or printed.
	Password string `yaml:"-"`
}

// HTTP configures the metrics, health and API listener.
type HTTP struct {
	Listen string `yaml:"listen"` // default 127.0.0.1:9817
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
