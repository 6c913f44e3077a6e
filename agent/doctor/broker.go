package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/vigil-monitor/vigil/agent/config"
)

// BrokerChecks checks the MQTT broker of the config: for the embedded
// broker, that its listen address is free or already the running agent's;
// for each broker URL, a TCP connection, the TLS handshake with the
// config's CA and client certificate (ssl://, tls://, mqtts://, wss://),
// and an MQTT CONNECT with the config's user name and password.
func BrokerChecks(cfg *config.Config, o Options) []Check {
	m := cfg.MQTT
	statusTopic := m.TopicPrefix + "/" + cfg.Site + "/" + cfg.Room + "/status"
	if m.URL == config.DefaultMQTTURL {
		return []Check{{Name: "broker (embedded)", Run: func(ctx context.Context) Result {
			return checkEmbedded(ctx, "broker (embedded)", m, statusTopic)
		}}}
	}
	urls := append([]string{m.URL}, m.FailoverURLs...)
	var checks []Check
	for _, u := range urls {
		name := "broker"
		if len(urls) > 1 {
			name = "broker " + u
		}
		checks = append(checks, Check{Name: name, Run: func(ctx context.Context) Result {
			return checkBroker(ctx, name, u, m)
		}})
	}
	return checks
}

// doctorClientID is the client id the checks connect with: never the
// agent's own, or the broker would disconnect the running agent (MQTT
// 3.1.1 section 3.1.4: a second connection with the same id takes over).
func doctorClientID(m config.MQTT) string {
	return m.ClientID + "-doctor"
}

func checkBroker(ctx context.Context, name, raw string, m config.MQTT) Result {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return failf(name, "correct mqtt.url (`vigil config check` explains the form)", "mqtt.url %q is not a broker URL", raw)
	}
	secure := u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" || u.Scheme == "tcps" || u.Scheme == "wss"
	addr := u.Host
	if u.Port() == "" {
		port := "1883"
		switch {
		case u.Scheme == "ws":
			port = "80"
		case u.Scheme == "wss":
			port = "443"
		case secure:
			port = "8883"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}

	conn, r := dial(ctx, name, addr, "the broker",
		"start the broker (e.g. `systemctl start mosquitto`) or correct the port in mqtt.url")
	if conn == nil {
		return r
	}
	var tlsCfg *tls.Config
	how := "TCP"
	if secure {
		tlsCfg, err = brokerTLS(m, u.Hostname())
		if err != nil {
			conn.Close()
			return failf(name, "make mqtt.ca_file, cert_file and key_file readable PEM files (the CA that signed the broker's certificate; this room's client certificate and key)",
				"the TLS files cannot be used: %v", err)
		}
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			tc.Close()
			finding, fix := describeTLSError(err, "mqtt.ca_file", "mqtt.url")
			return failf(name, fix, "TLS handshake with %s failed: %s", addr, finding)
		}
		how = tls.VersionName(tc.ConnectionState().Version)
		tc.Close()
	} else {
		conn.Close()
	}

	if err := mqttConnect(ctx, raw, m, tlsCfg); err != nil {
		return connectFailure(name, addr, m, err)
	}
	who := "anonymously"
	if m.Username != "" {
		who = "as " + m.Username
	}
	return okf(name, "%s reachable over %s; MQTT CONNECT accepted %s", addr, how, who)
}

// dial opens a TCP connection to addr, or returns the failure to report:
// what answered (what) could not be reached, and how to mend a refusal.
func dial(ctx context.Context, name, addr, what, fixRefused string) (net.Conn, Result) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		return conn, Result{}
	}
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return nil, failf(name, "correct the host name, or the machine's DNS (/etc/resolv.conf, /etc/hosts)",
			"cannot resolve %s: %s", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, failf(name, fixRefused, "nothing listens on %s (connection refused): %s is down or elsewhere", addr, what)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return nil, failf(name, "check the network path and any firewall between this machine and "+addr,
			"no answer from %s within the time allowed", addr)
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return nil, failf(name, "check this machine's network connection and routes to "+addr,
			"%s is unreachable from this machine: %v", addr, err)
	}
	return nil, failf(name, "check the network path to "+addr, "cannot connect to %s: %v", addr, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// brokerTLS is the TLS configuration the agent uses for the broker (as in
// agent/mqtt): the CA file replaces the system roots when given, and the
// client certificate goes with its key.
func brokerTLS(m config.MQTT, host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if m.CAFile != "" {
		pem, err := os.ReadFile(m.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", m.CAFile)
		}
		cfg.RootCAs = pool
	}
	if m.CertFile != "" || m.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(m.CertFile, m.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file and key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// describeTLSError turns a handshake error into a finding and a fix; caKey
// and urlKey name the config keys to change.
func describeTLSError(err error, caKey, urlKey string) (finding, fix string) {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		alert    tls.AlertError
		recErr   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is signed by an authority this machine does not trust",
			"set " + caKey + " to the CA certificate that signed the server's certificate"
	case errors.As(err, &hostname):
		names := "none"
		if hostname.Certificate != nil && len(hostname.Certificate.DNSNames) > 0 {
			names = strings.Join(hostname.Certificate.DNSNames, ", ")
		}
		return fmt.Sprintf("the server's certificate is not for %s (it names %s)", hostname.Host, names),
			"connect by a name the certificate holds, in " + urlKey + ", or reissue the certificate with this name"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the server's certificate has expired or is not yet valid (check this machine's clock too)",
			"renew the server's certificate; if it is valid, synchronise this machine's clock"
	case errors.As(err, &alert):
		return fmt.Sprintf("the server refused the handshake (%v)", err),
			"the server probably wants a client certificate it trusts: set cert_file and key_file to this room's certificate, signed by the CA the server trusts"
	case errors.As(err, &recErr):
		return "the server does not speak TLS on this port",
			"use the server's TLS port, or a plain scheme (tcp://, http://) if it has no TLS"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection during the handshake: it may not speak TLS on this port",
			"use the server's TLS port, or a plain scheme (tcp://, http://) if it has no TLS; if it does speak TLS, check its log for why it refused"
	}
	return err.Error(), "check the server's TLS configuration and " + caKey
}

// mqttConnect connects and disconnects once, without a will, under the
// doctor's own client id.
func mqttConnect(ctx context.Context, raw string, m config.MQTT, tlsCfg *tls.Config) error {
	timeout := time.Until(deadlineOf(ctx))
	if timeout < time.Second {
		timeout = time.Second
	}
	opts := paho.NewClientOptions().
		AddBroker(raw).
		SetClientID(doctorClientID(m)).
		SetUsername(m.Username).
		SetPassword(m.Password).
		SetCleanSession(true).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(timeout)
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	// The connect timeout bounds the attempt: waiting it out (rather than
	// returning at ctx's end) leaves no paho goroutine behind.
	tok.Wait()
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(250)
	return nil
}

// deadlineOf is ctx's deadline, or DefaultTimeout from now.
func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(DefaultTimeout)
}

func connectFailure(name, addr string, m config.MQTT, err error) Result {
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		if m.Username == "" {
			return failf(name, "the broker requires a user name and password: set mqtt.username and mqtt.password_file (a file holding the password)",
				"the broker at %s refused the connection: not authorised (no user name configured)", addr)
		}
		return failf(name, "check mqtt.username and the password in mqtt.password_file against the broker's password file (mosquitto_passwd -b FILE "+m.Username+" PASSWORD, then reload mosquitto), and that the broker's ACL lets this user connect",
			"the broker at %s refused user %s: not authorised (wrong user name or password)", addr, m.Username)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return failf(name, "shorten mqtt.client_id or allow longer ids on the broker",
			"the broker at %s rejected the client id %s", addr, doctorClientID(m))
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		return failf(name, "check the broker's log (journalctl -u mosquitto)", "the broker at %s answered: server unavailable", addr)
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return failf(name, "use a broker that speaks MQTT 3.1.1 (Mosquitto 1.4 or later)", "the broker at %s does not accept MQTT 3.1.1", addr)
	}
	msg := err.Error()
	if strings.Contains(msg, "tls") || strings.Contains(msg, "certificate") {
		return failf(name, "the broker probably refused this client's certificate: set mqtt.cert_file and mqtt.key_file to this room's certificate, signed by the CA in the broker's cafile",
			"the broker at %s closed the TLS connection: %s", addr, msg)
	}
	return failf(name, "check the broker's log (journalctl -u mosquitto) for why it closed the connection",
		"MQTT CONNECT to %s failed: %s", addr, msg)
}

// checkEmbedded checks that mqtt.listen is free for the agent's embedded
// broker, or already served by it: the running agent keeps its room status
// retained there.
func checkEmbedded(ctx context.Context, name string, m config.MQTT, statusTopic string) Result {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", m.Listen)
	if err == nil {
		l.Close()
		return okf(name, "mqtt.listen %s is free: the agent's embedded broker takes it at start", m.Listen)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return failf(name, "set mqtt.listen to an address of this machine (127.0.0.1:1883 for this machine only)",
			"the embedded broker cannot listen on %s: %v", m.Listen, err)
	}
	addr := dialAddr(m.Listen)
	state, err := retainedStatus(ctx, "tcp://"+addr, m, statusTopic)
	if err == nil && strings.Contains(state, `"online"`) {
		return okf(name, "%s is the running agent's embedded broker (room status online)", m.Listen)
	}
	return failf(name, "stop the program holding the port (`ss -ltnp 'sport = :"+portOf(m.Listen)+"'` names it; often a Mosquitto: `systemctl disable --now mosquitto`) or set mqtt.listen to a free port, and the clients' URLs with it",
		"mqtt.listen %s is taken by another program, not this room's agent", m.Listen)
}

// retainedStatus connects to the broker at url and returns the retained
// message of topic, "" when there is none.
func retainedStatus(ctx context.Context, url string, m config.MQTT, topic string) (string, error) {
	timeout := time.Until(deadlineOf(ctx))
	if timeout < time.Second {
		timeout = time.Second
	}
	got := make(chan string, 1)
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID(doctorClientID(m)).
		SetCleanSession(true).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(timeout)
	c := paho.NewClient(opts)
	tok := c.Connect()
	tok.Wait()
	if err := tok.Error(); err != nil {
		return "", err
	}
	defer c.Disconnect(100)
	sub := c.Subscribe(topic, 1, func(_ paho.Client, msg paho.Message) {
		select {
		case got <- string(msg.Payload()):
		default:
		}
	})
	if !sub.WaitTimeout(timeout) || sub.Error() != nil {
		return "", fmt.Errorf("subscribe %s: %v", topic, sub.Error())
	}
	// A retained message comes right after SUBACK; a short wait suffices.
	wait := time.NewTimer(min(2*time.Second, time.Until(deadlineOf(ctx))))
	defer wait.Stop()
	select {
	case s := <-got:
		return s, nil
	case <-wait.C:
		return "", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// dialAddr turns a listen address into one to connect to: an unspecified
// host (":1883", "0.0.0.0:1883", "[::]:1883") means this machine.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func portOf(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	return port
}
