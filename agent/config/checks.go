package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Broker URL schemes, as paho.mqtt.golang dials them: tcp and mqtt are plain
// TCP; ssl, tls and mqtts are TCP with TLS; ws and wss are WebSocket.
var (
	plainSchemes = []string{"tcp", "mqtt"}
	tlsSchemes   = []string{"ssl", "tls", "mqtts"}
	wsSchemes    = []string{"ws", "wss"}
)

const urlHelp = `use "embedded", or tcp://host:port (also mqtt://), ssl://host:port (also tls://, mqtts://) for TLS, ws:// or wss:// for WebSocket`

// checkBrokerURL returns what is wrong with an mqtt.url, or "".
func checkBrokerURL(s string) string {
	if s == DefaultMQTTURL {
		return ""
	}
	if strings.Contains(s, "@") {
		// Checked before anything else, so no message echoes the url: it would
		// carry the password into the terminal and logs. The url itself is
		// logged at run time, hence username and password_file.
		return "url must not contain a user name or password (user:password@): use username and password_file"
	}
	if !strings.Contains(s, "://") {
		return fmt.Sprintf("invalid url %s: no scheme; %s", quote(s), urlHelp)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("invalid url %s; %s", quote(s), urlHelp)
	}
	scheme := u.Scheme
	isWS := slices.Contains(wsSchemes, scheme)
	if !isWS && !slices.Contains(plainSchemes, scheme) && !slices.Contains(tlsSchemes, scheme) {
		return fmt.Sprintf("unsupported url scheme %s; %s", quote(scheme), urlHelp)
	}
	if u.Hostname() == "" {
		return fmt.Sprintf("url %s has no host", quote(s))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("url %s: port must be 1-65535", quote(s))
		}
	} else if !isWS {
		// paho dials host as written; without a port the dial fails at run time.
		example := "1883"
		if isTLSScheme(scheme) {
			example = "8883"
		}
		return fmt.Sprintf("url %s has no port, e.g. %s://%s:%s", quote(s), scheme, u.Hostname(), example)
	}
	if !isWS && (u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "") {
		return fmt.Sprintf("url %s: a %s:// url takes no path or query", quote(s), scheme)
	}
	return ""
}

func isTLSScheme(scheme string) bool { return slices.Contains(tlsSchemes, scheme) || scheme == "wss" }

// brokerScheme is the scheme of a valid mqtt.url, or "embedded".
func brokerScheme(u string) string {
	if u == DefaultMQTTURL {
		return u
	}
	scheme, _, _ := strings.Cut(u, "://")
	return strings.ToLower(scheme)
}

// checkListen returns what is wrong with a host:port listen address, or "".
func checkListen(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("invalid address %s: write host:port, e.g. 127.0.0.1:9817 or :9817 for all interfaces", quote(s))
	}
	// Port 0 asks the system for any free port (tests, several agents on one
	// machine); the port taken is logged at start.
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("invalid address %s: port must be a number 0-65535 (0: any free port)", quote(s))
	}
	if host == "" || net.ParseIP(host) != nil {
		return ""
	}
	if !validHostname(host) {
		return fmt.Sprintf("invalid address %s: %s is neither an IP address nor a host name", quote(s), quote(host))
	}
	return ""
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// checkTopicPrefix returns what is wrong with a topic prefix, or "". It is
// the first levels of every topic Vigil publishes, so it must be a plain
// topic name (MQTT 3.1.1 §4.7).
func checkTopicPrefix(s string) string {
	switch {
	case s == "":
		return "is empty; leave the key out for the default " + strconv.Quote(DefaultTopicPrefix)
	case strings.ContainsAny(s, "+#"):
		return fmt.Sprintf("topic_prefix %s must not contain the wildcards + or #", quote(s))
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return fmt.Sprintf("topic_prefix %s must not start or end with '/'", quote(s))
	case strings.Contains(s, "//"):
		return fmt.Sprintf("topic_prefix %s has an empty level (//)", quote(s))
	case strings.HasPrefix(s, "$"):
		return fmt.Sprintf("topic_prefix %s must not start with '$' (reserved for broker topics such as $SYS)", quote(s))
	case strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
		return "topic_prefix must not contain control characters"
	}
	return ""
}

// maxKeepAlive is the largest keep-alive MQTT can carry: a 16-bit count of
// seconds in the CONNECT packet (MQTT 3.1.1 §3.1.2.10).
const maxKeepAlive = 65535 * time.Second

func checkKeepAlive(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("keep_alive %s is below the minimum 1s", d)
	case d > maxKeepAlive:
		return fmt.Sprintf("keep_alive %s is above the MQTT maximum %s", d, maxKeepAlive)
	case d%time.Second != 0:
		return fmt.Sprintf("keep_alive %s is not whole seconds (the broker is told seconds)", d)
	}
	return ""
}

// crossCheck runs the checks that involve several keys or the file system.
// Keys that already have a problem are skipped, so one mistake is reported
// once.
func (w *walker) crossCheck(c *Config) {
	m := &c.MQTT
	scheme := ""
	if !w.bad["mqtt.url"] {
		scheme = brokerScheme(m.URL)
	}

	if scheme != "" && scheme != DefaultMQTTURL && w.at("mqtt.listen") != nil && !w.bad["mqtt.listen"] {
		w.add(w.at("mqtt.listen"), "mqtt.listen", "is only used by the embedded broker, but url is %s", m.URL)
	}
	if scheme == DefaultMQTTURL && !w.bad["mqtt.listen"] && !w.bad["http.listen"] && sameListener(m.Listen, c.HTTP.Listen) {
		node := w.at("http.listen")
		if node == nil {
			node = w.at("mqtt.listen")
		}
		w.add(node, "http.listen", "%s collides with mqtt.listen %s (the embedded broker)", c.HTTP.Listen, m.Listen)
	}

	// TLS files: only meaningful with a TLS URL; a ca_file beside tcp:// would
	// leave the operator believing the link is encrypted.
	tlsFiles := []struct {
		key string
		val *string
	}{{"mqtt.ca_file", &m.CAFile}, {"mqtt.cert_file", &m.CertFile}, {"mqtt.key_file", &m.KeyFile}}
	for _, f := range tlsFiles {
		if *f.val == "" || scheme == "" || isTLSScheme(scheme) {
			continue
		}
		w.add(w.at(f.key), f.key, "is only used with a TLS url (ssl://, tls://, mqtts:// or wss://), but url is %s", m.URL)
	}
	if (m.CertFile == "") != (m.KeyFile == "") {
		if m.CertFile != "" {
			w.add(w.at("mqtt.cert_file"), "mqtt.cert_file", "needs key_file as well (a client certificate is used with its key)")
		} else {
			w.add(w.at("mqtt.key_file"), "mqtt.key_file", "needs cert_file as well (a client key is used with its certificate)")
		}
	}
	var certPEM, keyPEM []byte
	for _, f := range tlsFiles {
		if *f.val == "" || w.bad[f.key] {
			continue
		}
		*f.val = w.resolvePath(*f.val)
		data, msg := readSmallFile(*f.val, 1<<20)
		if msg != "" {
			w.add(w.at(f.key), f.key, "%s", msg)
			continue
		}
		switch f.key {
		case "mqtt.ca_file":
			if !x509.NewCertPool().AppendCertsFromPEM(data) {
				w.add(w.at(f.key), f.key, "%s holds no PEM certificate", *f.val)
			}
		case "mqtt.cert_file":
			certPEM = data
		case "mqtt.key_file":
			keyPEM = data
		}
	}
	if certPEM != nil && keyPEM != nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			w.add(w.at("mqtt.cert_file"), "mqtt.cert_file", "cert_file and key_file are not a usable pair: %v", err)
		}
	}

	if m.PasswordFile != "" {
		if m.Username == "" && !w.bad["mqtt.username"] {
			// MQTT 3.1.1 §3.1.2.9: a password is sent only with a user name.
			w.add(w.at("mqtt.password_file"), "mqtt.password_file", "needs username as well (MQTT sends a password only with a user name)")
		}
		w.readPassword(m)
	}
}

// maxPasswordSize bounds the password file; a larger file is surely not a
// password (a key or certificate picked by mistake).
const maxPasswordSize = 4096

// readPassword fills m.Password from m.PasswordFile. Messages name the file,
// never its content.
func (w *walker) readPassword(m *MQTT) {
	const key = "mqtt.password_file"
	m.PasswordFile = w.resolvePath(m.PasswordFile)
	data, msg := readSmallFile(m.PasswordFile, maxPasswordSize)
	if msg != "" {
		w.add(w.at(key), key, "%s", msg)
		return
	}
	// Editors and `echo pw > file` end the file with a newline that is not
	// part of the password.
	pw := strings.TrimRight(string(data), "\r\n")
	switch {
	case pw == "":
		w.add(w.at(key), key, "%s is empty", m.PasswordFile)
	case strings.ContainsAny(pw, "\r\n"):
		w.add(w.at(key), key, "%s has more than one line; it must hold only the password", m.PasswordFile)
	default:
		m.Password = pw
	}
}

// resolvePath anchors a relative path to the config file's directory, so a
// config works the same whatever the working directory.
func (w *walker) resolvePath(p string) string {
	if filepath.IsAbs(p) || w.dir == "" {
		return p
	}
	return filepath.Join(w.dir, p)
}

// readSmallFile reads a regular file of at most limit bytes; on failure it
// returns a message naming the file.
func readSmallFile(path string, limit int64) ([]byte, string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Sprintf("cannot read %s: %s", path, fsReason(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Sprintf("cannot read %s: %s", path, fsReason(err))
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Sprintf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Sprintf("cannot read %s: %s", path, fsReason(err))
	}
	if int64(len(data)) > limit {
		return nil, fmt.Sprintf("%s is larger than %d bytes; is it the right file?", path, limit)
	}
	return data, ""
}

// sameListener reports whether two host:port listen addresses would collide.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}
