package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/vigil-monitor/vigil/drivers"
)

// The keys each mapping accepts, in the order the example config lists them.
var (
	topKeys     = []string{"site", "room", "devices", "mqtt", "http", "metrics", "alarms", "notify", "store", "session"}
	deviceKeys  = []string{"id", "driver", "port", "usb", "baud", "data_bits", "parity", "stop_bits", "stale_after", "silent_after", "nibp"}
	usbKeys     = []string{"vid", "pid", "serial"}
	mqttKeys    = []string{"url", "listen", "client_id", "username", "password_file", "ca_file", "cert_file", "key_file", "topic_prefix", "keep_alive"}
	httpKeys    = []string{"listen", "web_config_file"}
	metricsKeys = []string{"stale_after", "nibp_stale_after"}
)

// standardBauds are the serial rates a device's baud may be set to: the
// classic rates every USB-serial chip and Linux termios support (the
// bedside devices in protocols.md use 9600 to 115200). Odd values are
// refused because a typo such as 96000 would open the port at a rate no
// device speaks and the device would merely look silent.
var standardBauds = []int{300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

// parities and stopBits are the accepted spellings of those link settings,
// matching drivers.Link.
var (
	parities = []string{"none", "odd", "even", "mark", "space"}
	stopBits = []string{"1", "1.5", "2"}
)

// MinStaleAfter is the shortest stale limit accepted: devices report at most
// about once a second (protocols.md, e.g. Masimo §2.1 "one line per second"),
// so a shorter limit would mark every value stale between two readings.
const MinStaleAfter = time.Second

// nameRE is the shape of site, room and device ids: they become MQTT topic
// levels and Prometheus label values, where '/', '+', '#' and spaces either
// mean something or are a nuisance to quote.
var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

const nameRule = "use 1-32 lower-case letters, digits and '-' (it is an MQTT topic level)"

var hex4RE = regexp.MustCompile(`^[0-9a-fA-F]{4}$`)

func (w *walker) config(root *yaml.Node, c *Config) {
	pairs, _ := w.mapping(root, "", "a mapping")
	present := map[string]*yaml.Node{}
	for _, p := range pairs {
		present[p.name] = p.val
		switch p.name {
		case "site":
			c.Site = w.name(p)
		case "room":
			c.Room = w.name(p)
		case "devices":
			c.Devices = w.devices(p)
		case "mqtt":
			w.mqtt(p, &c.MQTT)
		case "http":
			w.http(p, &c.HTTP)
		case "metrics":
			w.metrics(p, &c.Metrics)
		case "alarms":
			w.alarms(p, &c.Alarms)
		case "notify":
			w.notify(p, &c.Notify)
		case "store":
			w.store(p, &c.Store)
		case "session":
			w.session(p, &c.Session)
		default:
			w.unknown(p, topKeys, "")
		}
	}
	w.required(present, "site", c.Site != "", "the clinic site, e.g. site: clinic-north; "+nameRule)
	w.required(present, "room", c.Room != "", "the treatment room, e.g. room: room-1; "+nameRule)
	w.required(present, "devices", len(c.Devices) > 0, "at least one device is required: an agent that watches nothing must not look like one that watches")

	if c.MQTT.URL == "" {
		c.MQTT.URL = DefaultMQTTURL
	}
	if c.MQTT.Listen == "" {
		c.MQTT.Listen = DefaultMQTTListen
	}
	if c.MQTT.TopicPrefix == "" {
		c.MQTT.TopicPrefix = DefaultTopicPrefix
	}
	if c.MQTT.KeepAlive == 0 {
		c.MQTT.KeepAlive = DefaultKeepAlive
	}
	if c.MQTT.ClientID == "" && c.Site != "" && c.Room != "" {
		// One agent per room: the broker drops an older connection with the
		// same client id, so the id must differ between rooms.
		c.MQTT.ClientID = "vigil-" + c.Site + "-" + c.Room
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = DefaultHTTPListen
	}
	if c.Metrics.StaleAfter == 0 {
		c.Metrics.StaleAfter = DefaultStaleAfter
	}
	if c.Metrics.NIBPStaleAfter == 0 {
		c.Metrics.NIBPStaleAfter = DefaultNIBPStaleAfter
	}
	storeDefaults(c)
	w.crossCheckSession(c)
}

// required reports key as missing or empty unless ok or already reported.
func (w *walker) required(present map[string]*yaml.Node, key string, ok bool, help string) {
	if ok || w.bad[key] {
		return
	}
	if n, there := present[key]; there {
		w.add(n, key, "is empty; %s", help)
		return
	}
	w.add(nil, key, "missing; %s", help)
}

// reservedDeviceIDs are the room-level MQTT topic levels beside the
// devices': a device of that name would share their topics.
var reservedDeviceIDs = map[string]bool{"alarms": true, "session": true, "status": true}

// name decodes a site, room or device id.
func (w *walker) name(p pair) string {
	s, set := w.text(p)
	if !set {
		return ""
	}
	if !nameRE.MatchString(s) {
		w.add(p.val, p.path, "invalid name %s: %s", quote(s), nameRule)
		return ""
	}
	return s
}

func (w *walker) devices(p pair) []Device {
	if isNull(p.val) {
		return nil
	}
	if p.val.Kind != yaml.SequenceNode {
		w.add(p.val, p.path, "expected a list of devices (each starting with \"- id: ...\"), got %s", describe(p.val))
		return nil
	}
	var out []Device
	firstID := map[string]int{}   // id -> index
	firstPort := map[string]int{} // cleaned port path -> index
	var withUSB []int             // indexes of devices given by USB identity
	for i, entry := range p.val.Content {
		path := fmt.Sprintf("%s[%d]", p.path, i)
		d := w.device(resolve(entry), path)
		out = append(out, d)
		if reservedDeviceIDs[d.ID] {
			w.add(w.at(path+".id"), path+".id", "id %s is reserved: the room's MQTT topics use it (vigil/{site}/{room}/%s)", quote(d.ID), d.ID)
		} else if d.ID != "" {
			if j, dup := firstID[d.ID]; dup {
				w.add(w.at(path+".id"), path+".id", "duplicate id %s (also %s[%d], line %d)", quote(d.ID), p.path, j, out[j].Line)
			} else {
				firstID[d.ID] = i
			}
		}
		if d.Port != "" {
			clean := filepath.Clean(d.Port)
			if j, dup := firstPort[clean]; dup {
				w.add(w.at(path+".port"), path+".port", "port %s is also used by %s[%d] (line %d); two readers of one port each get half the bytes", d.Port, p.path, j, out[j].Line)
			} else {
				firstPort[clean] = i
			}
		}
		if u := d.USB; u != nil && u.VID != "" && u.PID != "" {
			for _, j := range withUSB {
				o := out[j].USB
				if o.VID != u.VID || o.PID != u.PID {
					continue
				}
				if u.Serial == "" || o.Serial == "" || u.Serial == o.Serial {
					w.add(w.at(path+".usb"), path+".usb", "usb %s:%s is also matched by %s[%d] (line %d); give each adapter its own serial (see `vigil devices`)", u.VID, u.PID, p.path, j, out[j].Line)
					break
				}
			}
			withUSB = append(withUSB, i)
		}
	}
	return out
}

func (w *walker) device(n *yaml.Node, path string) Device {
	d := Device{Line: n.Line, Options: drivers.Options{}}
	if isNull(n) {
		w.add(n, path, "is empty; a device needs id, driver and port or usb")
		return d
	}
	pairs, ok := w.mapping(n, path, "a device (a mapping with id, driver and port or usb)")
	if !ok {
		return d
	}
	present := map[string]bool{}
	var options []pair
	for _, p := range pairs {
		present[p.name] = true
		switch p.name {
		case "id":
			d.ID = w.name(p)
		case "driver":
			d.Driver, _ = w.text(p)
		case "port":
			port, set := w.text(p)
			if set && !filepath.IsAbs(port) {
				w.add(p.val, p.path, "port %s is not an absolute path; use e.g. /dev/serial/by-id/usb-FTDI_..., which survives replugging", quote(port))
				break
			}
			d.Port = port
		case "usb":
			d.USB = w.usb(p)
		case "baud":
			v, set := w.integer(p)
			if !set {
				break
			}
			if !slices.Contains(standardBauds, v) {
				w.add(p.val, p.path, "baud %d is not a standard rate (one of %s)", v, joinInts(standardBauds))
				break
			}
			d.Baud = v
		case "data_bits":
			v, set := w.integer(p)
			if !set {
				break
			}
			if v < 5 || v > 8 {
				w.add(p.val, p.path, "data_bits %d is out of range 5-8", v)
				break
			}
			d.DataBits = v
		case "parity":
			s, set := w.text(p)
			if !set {
				break
			}
			if !slices.Contains(parities, s) {
				w.add(p.val, p.path, "invalid parity %s (one of %s)", quote(s), strings.Join(parities, ", "))
				break
			}
			d.Parity = s
		case "stop_bits":
			// Written as text so 1, 2 (YAML numbers), "1.5" and 1.5 all work.
			s, set := w.text(p)
			if !set {
				break
			}
			if !slices.Contains(stopBits, s) {
				w.add(p.val, p.path, "invalid stop_bits %s (one of %s)", quote(s), strings.Join(stopBits, ", "))
				break
			}
			d.StopBits = s
		case "stale_after":
			if v, set := w.duration(p); set {
				if v < MinStaleAfter {
					w.add(p.val, p.path, "stale_after %s is below the minimum %s", v, MinStaleAfter)
					break
				}
				d.StaleAfter = v
			}
		case "silent_after":
			if v, set := w.duration(p); set {
				if v < MinStaleAfter {
					w.add(p.val, p.path, "silent_after %s is below the minimum %s", v, MinStaleAfter)
					break
				}
				d.SilentAfter = v
			}
		case "nibp":
			d.NIBP = w.nibp(p)
		default:
			var v any
			if err := p.val.Decode(&v); err != nil {
				w.add(p.val, p.path, "cannot read option: %v", err)
				break
			}
			d.Options[p.name] = v
			options = append(options, p)
		}
	}

	if d.ID == "" && !w.bad[path+".id"] {
		w.add(n, path+".id", "missing; every device needs an id (%s)", nameRule)
	}

	var drv *drivers.Driver
	switch {
	case w.bad[path+".driver"]:
	case d.Driver == "":
		w.add(n, path+".driver", "missing; name the device's protocol (known: %s)", knownDrivers())
	default:
		var known bool
		if drv, known = drivers.Lookup(d.Driver); !known {
			w.add(w.at(path+".driver"), path+".driver", "unknown driver %s (known: %s)", quote(d.Driver), knownDrivers())
		}
	}

	// Exactly one way to find the port: with both, which one wins would be a
	// guess; with neither, there is nothing to open. Devices that connect to
	// the agent (HL7 over TCP) have neither: their driver options say where.
	if drv != nil && drv.Transport != drivers.Serial {
		if d.Port != "" || d.USB != nil {
			w.add(n, path, "driver %s does not use a serial port: remove port/usb and give its listen and sender options", drv.Name)
		}
	} else if !w.bad[path+".port"] && !w.bad[path+".usb"] {
		hasPort, hasUSB := d.Port != "", d.USB != nil
		switch {
		case hasPort && hasUSB:
			w.add(n, path, "has both port and usb; keep one (port for a fixed path, usb to find the adapter by its identity)")
		case !hasPort && !hasUSB:
			w.add(n, path, "has neither port nor usb; add port: /dev/serial/by-id/... or usb: {vid: ..., pid: ...}")
		}
	}

	if drv != nil {
		w.driverOptions(drv, &d, n, path, options)
		if d.NIBP != nil && !driverTakes(drv, d.Options, "nibp_start") {
			w.add(w.at(path+".nibp"), path+".nibp", "driver %s cannot start a blood-pressure measurement; nibp applies to NIBP monitors that take commands", drv.Name)
		}
	}
	return d
}

// MinNIBPInterval is the shortest automatic measurement interval accepted: a
// cuff cycle takes up to about a minute, and the arm needs time to recover
// between cycles.
const MinNIBPInterval = 2 * time.Minute

func (w *walker) nibp(p pair) *NIBP {
	pairs, ok := w.mapping(p.val, p.path, "a mapping such as {interval: 5m}")
	if !ok {
		return nil
	}
	n := &NIBP{}
	for _, q := range pairs {
		switch q.name {
		case "interval":
			if v, set := w.duration(q); set {
				if v < MinNIBPInterval {
					w.add(q.val, q.path, "interval %s is below the minimum %s between cuff measurements", v, MinNIBPInterval)
					break
				}
				n.Interval = v
			}
		default:
			w.unknown(q, []string{"interval"}, "")
		}
	}
	return n
}

// driverTakes reports whether the driver's decoder accepts the command.
func driverTakes(drv *drivers.Driver, opts drivers.Options, command string) bool {
	dec, err := drv.NewDecoder(opts)
	if err != nil {
		return false
	}
	c, ok := dec.(drivers.Commander)
	return ok && slices.Contains(c.Commands(), command)
}

// driverOptions hands a device's extra keys to its driver. A driver error is
// pinned to the option it names when exactly one option's name appears in
// it, else to the device entry.
func (w *walker) driverOptions(drv *drivers.Driver, d *Device, n *yaml.Node, path string, options []pair) {
	if drv.Validate == nil {
		for _, p := range options {
			w.unknown(p, deviceKeys, fmt.Sprintf("; driver %s takes no options", drv.Name))
		}
		return
	}
	for _, err := range validateOptions(drv, d.Options) {
		at, key := n, path
		var named []pair
		for _, p := range options {
			if mentions(err.Error(), p.name) {
				named = append(named, p)
			}
		}
		if len(named) == 1 {
			at, key = named[0].val, named[0].path
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, drv.Name) {
			msg = "driver " + drv.Name + ": " + msg
		}
		w.add(at, key, "%s", msg)
	}
}

// validateOptions runs the driver's check, one error per problem when the
// driver joined several (errors.Join). A panic is a driver bug; it is
// reported like a problem rather than crashing the config check.
func validateOptions(drv *drivers.Driver, opts drivers.Options) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			errs = []error{fmt.Errorf("failed while checking its options (a bug in the driver): %v", r)}
		}
	}()
	err := drv.Validate(opts)
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}

// mentions reports whether msg contains word not as part of a longer word.
func mentions(msg, word string) bool {
	isWord := func(b byte) bool {
		return b == '_' || b == '-' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
	}
	for from := 0; ; {
		i := strings.Index(msg[from:], word)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(word)
		if (i == 0 || !isWord(msg[i-1])) && (end == len(msg) || !isWord(msg[end])) {
			return true
		}
		from = i + 1
	}
}

func knownDrivers() string {
	names := drivers.Names()
	if len(names) == 0 {
		return "none registered: this binary was built without drivers"
	}
	return strings.Join(names, ", ")
}

func (w *walker) usb(p pair) *USB {
	if isNull(p.val) {
		return nil
	}
	pairs, ok := w.mapping(p.val, p.path, "a USB identity (vid:, pid:, serial:)")
	if !ok {
		return nil
	}
	u := &USB{}
	for _, q := range pairs {
		switch q.name {
		case "vid", "pid":
			s, set := w.text(q)
			if !set {
				break
			}
			if !hex4RE.MatchString(s) {
				w.add(q.val, q.path, "%s %s must be exactly 4 hex digits, e.g. \"0403\" (as `vigil devices` shows it, without 0x)", q.name, quote(s))
				break
			}
			if q.name == "vid" {
				u.VID = strings.ToLower(s)
			} else {
				u.PID = strings.ToLower(s)
			}
		case "serial":
			u.Serial, _ = w.text(q)
		default:
			w.unknown(q, usbKeys, "")
		}
	}
	if u.VID == "" && !w.bad[p.path+".vid"] {
		w.add(p.val, p.path+".vid", "missing; the adapter's USB vendor id, 4 hex digits (see `vigil devices`)")
	}
	if u.PID == "" && !w.bad[p.path+".pid"] {
		w.add(p.val, p.path+".pid", "missing; the adapter's USB product id, 4 hex digits (see `vigil devices`)")
	}
	return u
}

func (w *walker) mqtt(p pair, m *MQTT) {
	pairs, ok := w.mapping(p.val, p.path, "a mapping of broker settings")
	if !ok {
		return
	}
	for _, q := range pairs {
		switch q.name {
		case "url":
			if q.val.Kind == yaml.SequenceNode {
				// Several brokers (a cluster, or bridged Mosquittos): the
				// first is tried first, the others on failure.
				urls, nodes := w.stringList(q)
				if len(nodes) == 0 {
					w.add(q.val, q.path, "empty list; give one broker url or several")
					break
				}
				for i, u := range urls {
					if u == DefaultMQTTURL {
						w.add(nodes[i], q.path, "embedded cannot be one of several brokers")
						continue
					}
					if msg := checkBrokerURL(u); msg != "" {
						w.add(nodes[i], q.path, "%s", msg)
						continue
					}
					if i > 0 && isTLSScheme(brokerScheme(u)) != isTLSScheme(brokerScheme(urls[0])) {
						w.add(nodes[i], q.path, "all brokers must use TLS or none (one set of TLS settings serves them all)")
					}
				}
				if !w.bad[q.path] && len(urls) > 0 {
					m.URL, m.FailoverURLs = urls[0], urls[1:]
				}
				break
			}
			s, set := w.text(q)
			if !set {
				break
			}
			if msg := checkBrokerURL(s); msg != "" {
				w.add(q.val, q.path, "%s", msg)
				break
			}
			m.URL = s
		case "listen":
			if s, set := w.text(q); set {
				if msg := checkListen(s); msg != "" {
					w.add(q.val, q.path, "%s", msg)
					break
				}
				m.Listen = s
			}
		case "client_id":
			if s, set := w.text(q); set {
				if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
					w.add(q.val, q.path, "client_id %s must not contain spaces or control characters", quote(s))
					break
				}
				m.ClientID = s
			}
		case "username":
			if s, set := w.text(q); set {
				if strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
					w.add(q.val, q.path, "username must not contain control characters")
					break
				}
				m.Username = s
			}
		case "password_file":
			m.PasswordFile, _ = w.text(q)
		case "ca_file":
			m.CAFile, _ = w.text(q)
		case "cert_file":
			m.CertFile, _ = w.text(q)
		case "key_file":
			m.KeyFile, _ = w.text(q)
		case "topic_prefix":
			s, set := w.text(q)
			if !set {
				break
			}
			if msg := checkTopicPrefix(s); msg != "" {
				w.add(q.val, q.path, "%s", msg)
				break
			}
			m.TopicPrefix = s
		case "keep_alive":
			v, set := w.duration(q)
			if !set {
				break
			}
			if msg := checkKeepAlive(v); msg != "" {
				w.add(q.val, q.path, "%s", msg)
				break
			}
			m.KeepAlive = v
		default:
			w.unknown(q, mqttKeys, "")
		}
	}
}

func (w *walker) http(p pair, h *HTTP) {
	pairs, ok := w.mapping(p.val, p.path, "a mapping of HTTP settings")
	if !ok {
		return
	}
	for _, q := range pairs {
		switch q.name {
		case "listen":
			if s, set := w.text(q); set {
				if msg := checkListen(s); msg != "" {
					w.add(q.val, q.path, "%s", msg)
					break
				}
				h.Listen = s
			}
		case "web_config_file":
			if s, set := w.text(q); set {
				path := w.resolvePath(s)
				if _, msg := readSmallFile(path, 1<<20); msg != "" {
					w.add(q.val, q.path, "%s", msg)
					break
				}
				h.WebConfigFile = path
			}
		default:
			w.unknown(q, httpKeys, "")
		}
	}
}

func (w *walker) metrics(p pair, m *Metrics) {
	pairs, ok := w.mapping(p.val, p.path, "a mapping of metrics settings")
	if !ok {
		return
	}
	for _, q := range pairs {
		var dst *time.Duration
		switch q.name {
		case "stale_after":
			dst = &m.StaleAfter
		case "nibp_stale_after":
			dst = &m.NIBPStaleAfter
		default:
			w.unknown(q, metricsKeys, "")
			continue
		}
		v, set := w.duration(q)
		if !set {
			continue
		}
		if v < MinStaleAfter {
			w.add(q.val, q.path, "%s %s is below the minimum %s", q.name, v, MinStaleAfter)
			continue
		}
		*dst = v
	}
}

func joinInts(list []int) string {
	s := make([]string, len(list))
	for i, v := range list {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ", ")
}
