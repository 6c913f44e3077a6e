package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultTopicPrefix is the first topic level when Options.TopicPrefix is
// empty.
const DefaultTopicPrefix = "vigil"

// DefaultKeepAlive is the MQTT keep-alive when Options.KeepAlive is zero. The
// broker publishes the Last Will after 1.5 keep-alives without a packet
// (MQTT 3.1.1 section 3.1.2.10), so this bounds how long a dead agent still
// looks online.
const DefaultKeepAlive = 10 * time.Second

// Options configures a Publisher.
type Options struct {
	// URL is the broker: tcp://host:port, ssl://host:port (also mqtt, mqtts,
	// tls, tcps, ws, wss). Not "embedded": the caller starts the embedded
	// broker and passes its tcp URL.
	URL string
	// FailoverURLs are further brokers of the same cluster or bridge set,
	// tried in order after URL when a connection fails (paho's AddBroker).
	// Same kind of scheme as URL (all TLS or none).
	FailoverURLs []string
	ClientID     string // default "vigil-{site}-{room}"
	Username     string
	Password     string // never logged
	// TLS material, read at New. CAFile replaces the system roots; CertFile
	// and KeyFile (both or neither) are the client certificate.
	CAFile, CertFile, KeyFile string

	TopicPrefix string // default "vigil"; may hold several levels ("clinic/vigil")
	Site, Room  string // one topic level each, required
	Version     string // the agent's version, in the room status

	KeepAlive time.Duration // default 10s, at least 1s
	Logger    *slog.Logger  // nil: slog.Default()

	// OnConnectionChange is told every change of the broker connection, in
	// order, from one goroutine: true once connected, false when the
	// connection is lost. It must not block for long.
	OnConnectionChange func(connected bool)
	// OnPublishError is told every message paho refused or reported as
	// failed, and every reading refused because its topic would be invalid or
	// the publisher is closed. It may be called from several goroutines.
	OnPublishError func(err error)
	// OnCommand, when set, turns on commands: the publisher subscribes to
	// {prefix}/{site}/{room}/+/cmd and calls OnCommand for every well-formed
	// command, with the device level of its topic and the command name
	// (see the package doc). Calls come one at a time, in arrival order,
	// from a goroutine the publisher owns. The device is only checked for
	// form ([a-z0-9-]{1,32}): OnCommand must refuse a device that is not
	// configured, and a command the device does not support. It returns nil
	// when the command was carried out (or started), else the reason, which
	// is published in the result. It should return within seconds: commands
	// behind it wait (the newest are dropped beyond a small queue), and
	// Close waits for a call in progress, so OnCommand must not call Close.
	// It may call DeviceStatus and Consume. When nil, the publisher does
	// not subscribe.
	OnCommand func(device, command string) error
	// OnAlarmCommand, when set, also turns on commands, and receives the
	// commands published on {prefix}/{site}/{room}/alarms/cmd (see
	// AlarmCommand), checked for form, in the same order and goroutine as
	// OnCommand's. It returns nil when done, else the reason (unknown alarm,
	// already acknowledged), published on alarms/cmd/result.
	OnAlarmCommand func(AlarmCommand) error
	// OnSessionCommand, likewise, receives the commands published on
	// {prefix}/{site}/{room}/session/cmd (see SessionCommand).
	OnSessionCommand func(SessionCommand) error

	// Outbox, when set, is the durable outbox the publisher drains, in ID
	// order, whenever OutboxChanged is called and after every (re)connect;
	// OnDelivered is told the ID of each message the broker acknowledged
	// (called from paho's goroutine: it must not block). Messages with an
	// ID up to ReplayThrough were taken by an earlier run of the agent and
	// are sent with "replayed": true.
	// Heartbeat, when set, is called by the sender at least once a second
	// while it is not stuck (inside paho's Publish it may wait up to the
	// write timeout): the systemd watchdog's sign of progress.
	Heartbeat func()

	Outbox        Outbox
	OnDelivered   func(id int64)
	ReplayThrough int64
}

// OptionError is a configuration problem found by New.
type OptionError struct {
	Field  string // the Options field, e.g. "URL"
	Reason string
	Err    error // the underlying error, if any
}

func (e *OptionError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("mqtt: option %s: %s: %v", e.Field, e.Reason, e.Err)
	}
	return fmt.Sprintf("mqtt: option %s: %s", e.Field, e.Reason)
}

func (e *OptionError) Unwrap() error { return e.Err }

// schemes paho can dial, and which of them run over TLS.
var schemes = map[string]bool{
	"tcp": false, "mqtt": false, "ws": false,
	"ssl": true, "tls": true, "mqtts": true, "tcps": true, "wss": true,
}

// settings is Options after validation and defaulting.
type settings struct {
	Options
	tls       *tls.Config // nil for plain connections
	loggedURL string      // URL with any password masked, for logs
}

func validate(o Options) (*settings, error) {
	s := &settings{Options: o}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.TopicPrefix == "" {
		s.TopicPrefix = DefaultTopicPrefix
	}
	if s.KeepAlive == 0 {
		s.KeepAlive = DefaultKeepAlive
	}
	if s.KeepAlive < time.Second {
		return nil, &OptionError{Field: "KeepAlive", Reason: "must be at least 1s (MQTT counts it in whole seconds)"}
	}
	if err := validTopicLevel(s.Site); err != nil {
		return nil, &OptionError{Field: "Site", Reason: "not usable as a topic level", Err: err}
	}
	if err := validTopicLevel(s.Room); err != nil {
		return nil, &OptionError{Field: "Room", Reason: "not usable as a topic level", Err: err}
	}
	if strings.HasPrefix(s.TopicPrefix, "$") {
		return nil, &OptionError{Field: "TopicPrefix", Reason: "topics starting with $ are reserved for the broker"}
	}
	for _, level := range strings.Split(s.TopicPrefix, "/") {
		if err := validTopicLevel(level); err != nil {
			return nil, &OptionError{Field: "TopicPrefix", Reason: "not usable as topic levels", Err: err}
		}
	}
	if s.ClientID == "" {
		s.ClientID = "vigil-" + s.Site + "-" + s.Room
	}

	if s.URL == "" {
		return nil, &OptionError{Field: "URL", Reason: "empty"}
	}
	if s.URL == "embedded" {
		return nil, &OptionError{Field: "URL", Reason: `"embedded" must be resolved to the embedded broker's tcp URL by the caller`}
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, &OptionError{Field: "URL", Reason: "not a URL", Err: err}
	}
	s.loggedURL = u.Redacted()
	secure, known := schemes[u.Scheme]
	if !known {
		return nil, &OptionError{Field: "URL", Reason: fmt.Sprintf("scheme %q is not one of tcp, mqtt, ssl, tls, mqtts, tcps, ws, wss", u.Scheme)}
	}
	if u.Host == "" {
		return nil, &OptionError{Field: "URL", Reason: "no host"}
	}
	for _, f := range s.FailoverURLs {
		fu, err := url.Parse(f)
		if err != nil || fu.Host == "" {
			return nil, &OptionError{Field: "FailoverURLs", Reason: fmt.Sprintf("%q is not a broker URL", f)}
		}
		fsecure, known := schemes[fu.Scheme]
		if !known || fsecure != secure {
			// One TLS configuration serves every broker: mixing plain and
			// TLS brokers would send credentials in clear to some.
			return nil, &OptionError{Field: "FailoverURLs", Reason: fmt.Sprintf("%q must use a scheme of the same kind (TLS or not) as URL", f)}
		}
		s.loggedURL += "," + fu.Redacted()
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return nil, &OptionError{Field: "CertFile", Reason: "CertFile and KeyFile go together"}
	}
	if !secure {
		if s.CAFile != "" || s.CertFile != "" {
			return nil, &OptionError{Field: "URL", Reason: fmt.Sprintf("TLS files are set but scheme %q is not encrypted (use ssl://)", u.Scheme)}
		}
		return s, nil
	}
	s.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, &OptionError{Field: "CAFile", Reason: "unreadable", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &OptionError{Field: "CAFile", Reason: "no PEM certificate in " + s.CAFile}
		}
		s.tls.RootCAs = pool
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, &OptionError{Field: "CertFile", Reason: "cannot load the client certificate and key", Err: err}
		}
		s.tls.Certificates = []tls.Certificate{cert}
	}
	return s, nil
}

// ErrTopicLevel is wrapped by the errors for a name that cannot be one MQTT
// topic level.
var ErrTopicLevel = errors.New("invalid topic level")

// validTopicLevel checks that name is one non-empty topic level without
// wildcards (MQTT 3.1.1 section 4.7): publishing to "+", "#" or a name with
// "/" would be refused by the broker or, worse, land on another device's
// topic.
func validTopicLevel(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrTopicLevel)
	case strings.ContainsAny(name, "/+#\x00"):
		return fmt.Errorf("%w: %q contains /, +, # or NUL", ErrTopicLevel, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not UTF-8", ErrTopicLevel, name)
	}
	return nil
}
