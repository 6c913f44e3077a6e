package config

import (
	"strings"
	"testing"
)

// head is a valid config up to and including its first device's port; cases
// append to it, so their lines start at 7.
const head = `site: clinic-north
room: room-1
devices:
  - id: spo2
    driver: test-driver
    port: /dev/ttyUSB0
`

// Each case has exactly one problem, at a known line and key.
func TestOneProblemEach(t *testing.T) {
	cases := []struct {
		name string
		src  string
		line int
		key  string
		msg  string // a substring of the message
	}{
		// Empty and malformed files.
		{"empty file", "", 0, "", "config is empty"},
		{"only comments", "# nothing yet\n\n", 0, "", "config is empty"},
		{"only document marker", "---\n", 0, "", "config is empty"},
		{"tab indentation", "site: a\nroom: b\ndevices:\n\t- id: x\n", 4, "", "YAML syntax: a tab in the indentation; YAML indents with spaces only"},
		{"tab indentation nested", "site: a\nroom: b\ndevices:\n  - id: x\n  \t driver: y\n", 5, "", "a tab in the indentation"},
		{"syntax error unclosed", "site: a\nroom: [b\n", 2, "", "YAML syntax: did not find expected ',' or ']'"},
		{"syntax error list in mapping", "site: a\nroom: b\n- c\n", 3, "", "YAML syntax: did not find expected key"},
		{"syntax error unterminated quote", "site: a\nroom: 'b\n", 2, "", "YAML syntax: found unexpected end of stream"},
		{"syntax error bad indent", "site: a\nroom: b\n  x: y\n", 3, "", "YAML syntax: mapping values are not allowed"},
		{"two documents", minimal + "---\nsite: other\n", 8, "", "second YAML document"},
		{"not a mapping", "- site: a\n", 1, "", "must be a mapping of keys"},
		{"unknown anchor", minimal + "http: *nope\n", 0, "", "unknown anchor"},

		// Unknown keys.
		{"unknown key top level", head + "colour: blue\n", 7, "colour", "unknown key (known: site, room, devices, mqtt, http, metrics, alarms, notify, store, session)"},
		{"unknown key in mqtt", head + "mqtt:\n  urll: tcp://b:1883\n", 8, "mqtt.urll", "unknown key (known: url, listen,"},
		{"unknown key in http", head + "http:\n  port: 80\n", 8, "http.port", "unknown key (known: listen, web_config_file)"},
		{"unknown key in metrics", head + "metrics:\n  stale: 5s\n", 8, "metrics.stale", "unknown key (known: stale_after, nibp_stale_after)"},
		{"unknown key in usb", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    usb:\n      vid: \"0403\"\n      pid: \"6001\"\n      serail: A1\n", 9, "devices[0].usb.serail", "unknown key (known: vid, pid, serial)"},
		{"option for driver without options", head + "    colour: blue\n", 7, "devices[0].colour", "driver test-driver takes no options"},
		{"duplicate key", head + "site: again\n", 7, "site", "duplicate key (first at line 1)"},
		{"merge key", head + "mqtt:\n  <<: {url: embedded}\n", 8, "mqtt", "merge keys (<<) are not supported"},

		// Wrong types.
		{"baud not a number", head + "    baud: fast\n", 7, "devices[0].baud", `expected a whole number, got a string ("fast")`},
		{"baud fractional", head + "    baud: 9600.5\n", 7, "devices[0].baud", "expected a whole number, got a number (9600.5)"},
		{"devices a mapping", "site: a\nroom: b\ndevices: {}\n", 3, "devices", "expected a list of devices"},
		{"mqtt a number", head + "mqtt: 5\n", 7, "mqtt", "expected a mapping of broker settings, got a number (5)"},
		{"site a list", "site: [a, b]\nroom: r\ndevices:\n  - {id: x, driver: test-driver, port: /dev/x}\n", 1, "site", "expected a string, got a list"},
		{"device not a mapping", "site: a\nroom: b\ndevices:\n  - spo2\n", 4, "devices[0]", `expected a device (a mapping with id, driver and port or usb), got a string ("spo2")`},
		{"device entry empty", head + "  -\n", 7, "devices[1]", "is empty; a device needs id, driver and port or usb"},
		{"usb a string", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    usb: 0403:6001\n", 6, "devices[0].usb", "expected a USB identity"},
		{"duration a list", head + "metrics:\n  stale_after: [10s]\n", 8, "metrics.stale_after", "expected a duration"},
		{"key not a word", head + "? [a]\n: b\n", 7, "", "keys must be plain words, got a list"},

		// Missing required values.
		{"missing site", "room: r\ndevices:\n  - {id: x, driver: test-driver, port: /dev/x}\n", 0, "site", "missing; the clinic site"},
		{"empty room", "site: s\nroom:\ndevices:\n  - {id: x, driver: test-driver, port: /dev/x}\n", 2, "room", "is empty; the treatment room"},
		{"missing devices", "site: s\nroom: r\n", 0, "devices", "at least one device is required"},
		{"empty device list", "site: s\nroom: r\ndevices: []\n", 3, "devices", "at least one device is required"},
		{"missing device id", "site: a\nroom: b\ndevices:\n  - driver: test-driver\n    port: /dev/x\n", 4, "devices[0].id", "missing; every device needs an id"},
		{"missing driver", "site: a\nroom: b\ndevices:\n  - id: x\n    port: /dev/x\n", 4, "devices[0].driver", "missing; name the device's protocol (known: "},
		{"missing usb pid", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    usb:\n      vid: \"0403\"\n", 7, "devices[0].usb.pid", "missing; the adapter's USB product id"},

		// Invalid values.
		{"site upper case", "site: Clinic North\nroom: r\ndevices:\n  - {id: x, driver: test-driver, port: /dev/x}\n", 1, "site", `invalid name "Clinic North": use 1-32 lower-case letters`},
		{"room with slash", "site: s\nroom: a/b\ndevices:\n  - {id: x, driver: test-driver, port: /dev/x}\n", 2, "room", `invalid name "a/b"`},
		{"room too long", "site: s\nroom: " + strings.Repeat("r", 33) + "\ndevices:\n  - {id: x, driver: test-driver, port: /dev/x}\n", 2, "room", "invalid name"},
		{"device id with wildcard", "site: a\nroom: b\ndevices:\n  - id: spo2+\n    driver: test-driver\n    port: /dev/x\n", 4, "devices[0].id", `invalid name "spo2+"`},
		{"relative port", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    port: ttyUSB0\n", 6, "devices[0].port", `port "ttyUSB0" is not an absolute path`},
		{"non-standard baud", head + "    baud: 96000\n", 7, "devices[0].baud", "baud 96000 is not a standard rate (one of 300, 600, 1200,"},
		{"zero baud", head + "    baud: 0\n", 7, "devices[0].baud", "baud 0 is not a standard rate"},
		{"data bits", head + "    data_bits: 9\n", 7, "devices[0].data_bits", "data_bits 9 is out of range 5-8"},
		{"parity", head + "    parity: n\n", 7, "devices[0].parity", `invalid parity "n" (one of none, odd, even, mark, space)`},
		{"stop bits", head + "    stop_bits: 3\n", 7, "devices[0].stop_bits", `invalid stop_bits "3" (one of 1, 1.5, 2)`},
		{"usb vid too short", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    usb: {vid: \"403\", pid: \"6001\"}\n", 6, "devices[0].usb.vid", `vid "403" must be exactly 4 hex digits`},
		{"usb pid with 0x", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    usb: {vid: \"0403\", pid: 0x6001}\n", 6, "devices[0].usb.pid", `pid "0x6001" must be exactly 4 hex digits`},
		{"device stale_after too short", head + "    stale_after: 500ms\n", 7, "devices[0].stale_after", "stale_after 500ms is below the minimum 1s"},
		{"metrics stale_after too short", head + "metrics:\n  stale_after: 0s\n", 8, "metrics.stale_after", "stale_after 0s is below the minimum 1s"},
		{"nibp_stale_after negative", head + "metrics:\n  nibp_stale_after: -5m\n", 8, "metrics.nibp_stale_after", "nibp_stale_after -5m0s is below the minimum 1s"},
		{"topic prefix wildcard", head + "mqtt:\n  topic_prefix: vigil/#\n", 8, "mqtt.topic_prefix", "must not contain the wildcards"},
		{"topic prefix slash", head + "mqtt:\n  topic_prefix: /vigil\n", 8, "mqtt.topic_prefix", "must not start or end with '/'"},
		{"topic prefix empty level", head + "mqtt:\n  topic_prefix: a//b\n", 8, "mqtt.topic_prefix", "empty level"},
		{"topic prefix dollar", head + "mqtt:\n  topic_prefix: $SYS\n", 8, "mqtt.topic_prefix", "reserved for broker topics"},
		{"topic prefix empty", head + "mqtt:\n  topic_prefix: \"\"\n", 8, "mqtt.topic_prefix", "is empty; leave the key out"},
		{"keep alive fraction", head + "mqtt:\n  keep_alive: 1500ms\n", 8, "mqtt.keep_alive", "is not whole seconds"},
		{"keep alive too short", head + "mqtt:\n  keep_alive: 0s\n", 8, "mqtt.keep_alive", "below the minimum 1s"},
		{"keep alive too long", head + "mqtt:\n  keep_alive: 24h\n", 8, "mqtt.keep_alive", "above the MQTT maximum"},
		{"client id with space", head + "mqtt:\n  client_id: room 1\n", 8, "mqtt.client_id", "must not contain spaces"},
		{"http listen without port", head + "http:\n  listen: localhost\n", 8, "http.listen", `invalid address "localhost": write host:port`},
		{"http listen bad port", head + "http:\n  listen: \":99999\"\n", 8, "http.listen", "port must be a number 0-65535"},
		{"http listen named port", head + "http:\n  listen: \"127.0.0.1:http\"\n", 8, "http.listen", "port must be a number 0-65535"},
		{"http listen bad host", head + "http:\n  listen: \"bad_host!:80\"\n", 8, "http.listen", "is neither an IP address nor a host name"},
		{"mqtt listen bad", head + "mqtt:\n  listen: 1883\n", 8, "mqtt.listen", "invalid address"},
		{"listen collision", head + "mqtt:\n  listen: 127.0.0.1:9000\nhttp:\n  listen: :9000\n", 10, "http.listen", "collides with mqtt.listen"},
		{"listen with external broker", head + "mqtt:\n  url: tcp://b:1883\n  listen: 127.0.0.1:1883\n", 9, "mqtt.listen", "only used by the embedded broker"},

		// Duplicates and conflicts between devices.
		{"reserved id", head + "  - id: alarms\n    driver: test-driver\n    port: /dev/ttyUSB1\n", 7, "devices[1].id", `id "alarms" is reserved`},
		{"duplicate id", head + "  - id: spo2\n    driver: test-driver\n    port: /dev/ttyUSB1\n", 7, "devices[1].id", `duplicate id "spo2" (also devices[0], line 4)`},
		{"same port twice", head + "  - id: other\n    driver: test-driver\n    port: /dev/ttyUSB0\n", 9, "devices[1].port", "port /dev/ttyUSB0 is also used by devices[0] (line 4)"},
		{"same usb without serial", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    usb: {vid: \"0403\", pid: \"6001\", serial: A1}\n  - id: y\n    driver: test-driver\n    usb: {vid: \"0403\", pid: \"6001\"}\n", 9, "devices[1].usb", "usb 0403:6001 is also matched by devices[0] (line 4)"},
		{"port and usb", head + "    usb: {vid: \"0403\", pid: \"6001\"}\n", 4, "devices[0]", "has both port and usb"},
		{"neither port nor usb", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n", 4, "devices[0]", "has neither port nor usb"},
		{"null port", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-driver\n    port:\n", 4, "devices[0]", "has neither port nor usb"},

		// Drivers.
		{"nibp on an oximeter", "site: a\nroom: b\ndevices:\n  - id: x\n    port: /dev/x\n    driver: masimo-ascii\n    nibp: {interval: 5m}\n", 7, "devices[0].nibp", "cannot start a blood-pressure measurement"},
		{"nibp interval too short", "site: a\nroom: b\ndevices:\n  - id: x\n    port: /dev/x\n    driver: suntech-advantage\n    nibp:\n      interval: 30s\n", 8, "devices[0].nibp.interval", "below the minimum 2m0s"},
		{"nibp unknown key", "site: a\nroom: b\ndevices:\n  - id: x\n    port: /dev/x\n    driver: suntech-advantage\n    nibp:\n      every: 5m\n", 8, "devices[0].nibp.every", "unknown key (known: interval)"},
		{"unknown driver", "site: a\nroom: b\ndevices:\n  - id: x\n    port: /dev/x\n    driver: foo\n", 6, "devices[0].driver", `unknown driver "foo" (known: contec-cms50, hl7-mllp, masimo-ascii`},
		{"driver option invalid", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-options\n    port: /dev/x\n    mode: c\n    count: 2\n", 7, "devices[0].mode", "driver test-options: mode must be a or b, got c"},
		{"driver option missing", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-options\n    port: /dev/x\n", 4, "devices[0]", "driver test-options: needs an option saying which mode"},
		{"driver validate panics", "site: a\nroom: b\ndevices:\n  - id: x\n    driver: test-panics\n    port: /dev/x\n", 4, "devices[0]", "a bug in the driver): driver bug"},

		// Durations.
		{"duration without unit", head + "metrics:\n  stale_after: 10\n", 8, "metrics.stale_after", `duration 10 has no unit: write it with one, e.g. "10s" or "10m"`},
		{"quoted duration without unit", head + "    stale_after: \"30\"\n", 7, "devices[0].stale_after", "duration 30 has no unit"},
		{"duration fraction without unit", head + "mqtt:\n  keep_alive: 2.5\n", 8, "mqtt.keep_alive", "duration 2.5 has no unit"},
		{"duration nonsense", head + "metrics:\n  nibp_stale_after: ten minutes\n", 8, "metrics.nibp_stale_after", `invalid duration "ten minutes": use Go duration syntax`},

		// Broker URLs.
		{"url http scheme", head + "mqtt:\n  url: http://broker:1883\n", 8, "mqtt.url", `unsupported url scheme "http"`},
		{"url without scheme", head + "mqtt:\n  url: localhost:1883\n", 8, "mqtt.url", `invalid url "localhost:1883": no scheme`},
		{"url without port", head + "mqtt:\n  url: ssl://broker\n", 8, "mqtt.url", `url "ssl://broker" has no port, e.g. ssl://broker:8883`},
		{"url with credentials", head + "mqtt:\n  url: tcp://user:pw@broker:1883\n", 8, "mqtt.url", "must not contain a user name or password"},
		{"url credentials without scheme", head + "mqtt:\n  url: user:Zq8r@broker:1883\n", 8, "mqtt.url", "must not contain a user name or password"},
		{"url with path", head + "mqtt:\n  url: tcp://broker:1883/x\n", 8, "mqtt.url", "takes no path or query"},
		{"url without host", head + "mqtt:\n  url: tcp://:1883\n", 8, "mqtt.url", "has no host"},
		{"url bad port", head + "mqtt:\n  url: tcp://broker:0\n", 8, "mqtt.url", "port must be 1-65535"},
		{"url embeded typo", head + "mqtt:\n  url: embeded\n", 8, "mqtt.url", "no scheme"},

		// Secrets and TLS files.
		{"missing secret file", head + "mqtt:\n  username: vigil\n  password_file: /nonexistent/vigil-mqtt-password\n", 9, "mqtt.password_file", "cannot read /nonexistent/vigil-mqtt-password: file does not exist"},
		{"secret file is a directory", head + "mqtt:\n  username: vigil\n  password_file: /\n", 9, "mqtt.password_file", "/ is not a regular file"},
		{"ca file with plain url", head + "mqtt:\n  url: tcp://b:1883\n  ca_file: /etc/hostname\n", 9, "mqtt.ca_file", "only used with a TLS url"},
		{"ca file with embedded broker", head + "mqtt:\n  ca_file: /etc/hostname\n", 8, "mqtt.ca_file", "only used with a TLS url"},
		{"missing ca file", head + "mqtt:\n  url: ssl://b:8883\n  ca_file: /nonexistent/ca.pem\n", 9, "mqtt.ca_file", "cannot read /nonexistent/ca.pem: file does not exist"},
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
			if strings.Contains(p.Error(), "Zq8r") {
				t.Errorf("message echoes the password: %s", p.Error())
			}
			if c.line > 0 && p.Column == 0 && !strings.HasPrefix(p.Msg, "YAML syntax") {
				t.Errorf("problem at line %d has no column", p.Line)
			}
		})
	}
}

func TestSeveralProblemsAllReported(t *testing.T) {
	src := `site: Clinic
room: r
devices:
  - id: a
    driver: foo
    port: /dev/a
    baud: fast
  - id: a
    driver: test-driver
    port: relative
mqtt:
  url: http://x
  keep_alive: 10
colour: red
`
	_, ps := parse(t, src)
	want := []struct {
		line int
		key  string
	}{
		{1, "site"},
		{5, "devices[0].driver"},
		{7, "devices[0].baud"},
		{8, "devices[1].id"},
		{10, "devices[1].port"},
		{12, "mqtt.url"},
		{13, "mqtt.keep_alive"},
		{14, "colour"},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	for i, w := range want {
		if ps[i].Line != w.line || ps[i].Key != w.key {
			t.Errorf("problem %d = %s; want line %d key %s", i, ps[i].Error(), w.line, w.key)
		}
	}
	text := ps.Error()
	if got := strings.Count(text, "\n"); got != len(want)-1 {
		t.Errorf("Problems.Error() has %d newlines, want %d:\n%s", got, len(want)-1, text)
	}
	if !strings.HasPrefix(text, `vigil.yaml:1: site: invalid name "Clinic"`) {
		t.Errorf("Problems.Error() starts %q", text)
	}
}

// A problem in a nested value is reported once, not again as "missing" or
// as a conflict that follows from it.
func TestNoFollowOnProblems(t *testing.T) {
	for _, c := range []struct {
		src  string
		want int
	}{
		{"site: [x]\nroom: r\ndevices:\n  - {id: x, driver: test-driver, port: /dev/x}\n", 1},
		{"site: s\nroom: r\ndevices:\n  - {id: X, driver: test-driver, port: /dev/x}\n", 1},
		{"site: s\nroom: r\ndevices:\n  - {id: x, driver: [a], port: /dev/x}\n", 1},
		{"site: s\nroom: r\ndevices:\n  - {id: x, driver: test-driver, usb: [a]}\n", 1},
		{"site: s\nroom: r\ndevices:\n  - {id: x, driver: test-driver, port: dev}\n", 1},
		{"site: s\nroom: r\ndevices:\n  - {id: x, driver: test-driver, usb: {vid: 12345, pid: \"0001\"}}\n", 1},
		{"site: s\nroom: r\ndevices:\n  - {id: x, driver: nope, port: /dev/x, mode: a}\n", 1},
		{head + "mqtt:\n  url: nope\n  listen: 127.0.0.1:1\n", 1},
		// The username is bad and the file is missing: two problems, not a
		// third "needs username".
		{head + "mqtt:\n  username: \"a\\x01\"\n  password_file: /nonexistent\n", 2},
	} {
		_, ps := parse(t, c.src)
		if len(ps) != c.want {
			t.Errorf("want %d problem(s) for\n%s\ngot:\n%v", c.want, c.src, ps)
		}
	}
}
