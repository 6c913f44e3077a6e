package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"net/smtp"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/notify/email"
	"github.com/vigil-monitor/vigil/agent/notify/pushover"
)

// ChannelCheck checks that a notification channel can be reached, without
// sending anything: a web channel's host is resolved and dialled, with the
// TLS handshake for https; an SMTP server is dialled and greeted (EHLO, and
// STARTTLS when used) and left with QUIT; an exec channel's command must
// exist and be executable.
func ChannelCheck(c *config.Channel) Check {
	name := "channel " + c.Name
	return Check{Name: name, Run: func(ctx context.Context) Result {
		switch {
		case c.Webhook != nil:
			return checkWebURL(ctx, name, c.Webhook.URL, "url")
		case c.NTFY != nil:
			return checkWebURL(ctx, name, c.NTFY.URL, "url")
		case c.Alertmanager != nil:
			return checkWebURL(ctx, name, c.Alertmanager.URL, "url")
		case c.Pushover != nil:
			return checkWebURL(ctx, name, pushover.DefaultAPIURL, "")
		case c.Email != nil:
			return checkSMTP(ctx, name, c.Email)
		case c.Exec != nil:
			return checkExec(name, c.Exec.Command)
		}
		return failf(name, "give the channel a type: ntfy, pushover, webhook, alertmanager, email or exec", "channel of unknown type %q", c.Type)
	}}
}

// checkWebURL dials the host of an http(s) URL and, for https, completes
// the TLS handshake. Only scheme, host and port are shown: the path or
// query may hold the channel's secret (an ntfy topic, a webhook token).
func checkWebURL(ctx context.Context, name, raw, key string) Result {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return failf(name, "correct the channel's url", "the channel's url is not an absolute URL")
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	shown := u.Scheme + "://" + addr
	fixRefused := "start the receiving service on " + addr + ", or correct the channel's url"
	if key == "" {
		fixRefused = "check this machine's internet access and firewall (outgoing HTTPS to " + addr + ")"
	}
	conn, r := dial(ctx, name, addr, "the receiver", fixRefused)
	if conn == nil {
		return r
	}
	defer conn.Close()
	if u.Scheme != "https" {
		return okf(name, "%s reachable (TCP; nothing sent)", shown)
	}
	tc := tls.Client(conn, &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()})
	if err := tc.HandshakeContext(ctx); err != nil {
		finding, fix := describeTLSError(err, "the system's CA store (/usr/local/share/ca-certificates, then update-ca-certificates)", "the channel's url")
		return failf(name, fix, "TLS handshake with %s failed: %s", addr, finding)
	}
	return okf(name, "%s reachable (%s; nothing sent)", shown, tls.VersionName(tc.ConnectionState().Version))
}

// checkSMTP dials the smarthost, reads its greeting, says EHLO, upgrades
// with STARTTLS in that mode, and QUITs: no MAIL command, no message.
func checkSMTP(ctx context.Context, name string, c *email.Config) Result {
	host, _, err := net.SplitHostPort(c.Smarthost)
	if err != nil {
		return failf(name, "write smarthost as host:port, e.g. mail.clinic.example:587", "smarthost %q has no port", c.Smarthost)
	}
	conn, r := dial(ctx, name, c.Smarthost, "the mail server", "start the mail server, or correct smarthost (587 for STARTTLS, 465 for TLS)")
	if conn == nil {
		return r
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if c.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(c.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			return failf(name, "make ca_file a readable PEM certificate", "ca_file %s is unreadable or holds no PEM certificate", c.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	mode := c.TLS
	if mode == "" {
		mode = email.TLSStartTLS
	}
	how := "plain SMTP"
	if mode == email.TLSImplicit {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			finding, fix := describeTLSError(err, "ca_file", "smarthost")
			return failf(name, fix, "TLS handshake with %s failed: %s", c.Smarthost, finding)
		}
		conn, how = tc, "SMTP over TLS"
	}
	client, err := smtp.NewClient(conn, host)
	if err != nil {
		return failf(name, "check that smarthost is a mail server's SMTP port (587 STARTTLS, 465 TLS)", "%s did not greet as an SMTP server: %v", c.Smarthost, err)
	}
	defer client.Close()
	hello := c.Hello
	if hello == "" {
		hello, _ = os.Hostname()
	}
	if hello == "" {
		hello = "localhost"
	}
	if err := client.Hello(hello); err != nil {
		return failf(name, "check the mail server's log; set hello to a name the server accepts", "%s refused EHLO %s: %v", c.Smarthost, hello, err)
	}
	if mode == email.TLSStartTLS {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			return failf(name, "enable STARTTLS on the mail server, or use tls: tls with its TLS port (465)", "%s does not offer STARTTLS", c.Smarthost)
		}
		if err := client.StartTLS(tlsCfg); err != nil {
			finding, fix := describeTLSError(err, "ca_file", "smarthost")
			return failf(name, fix, "STARTTLS with %s failed: %s", c.Smarthost, finding)
		}
		how = "SMTP with STARTTLS"
	}
	if c.Username != "" {
		if ok, _ := client.Extension("AUTH"); !ok {
			client.Quit()
			return failf(name, "enable authentication on the mail server, or remove username and password_file", "%s offers no AUTH, but a username is configured", c.Smarthost)
		}
	}
	client.Quit()
	return okf(name, "%s answers %s (EHLO accepted; nothing sent)", c.Smarthost, how)
}

// checkExec checks that the command exists and may be run.
func checkExec(name string, argv []string) Result {
	if len(argv) == 0 || argv[0] == "" {
		return failf(name, "set command: [/path/to/program, arg, ...]", "the channel has no command")
	}
	path := argv[0]
	if !filepath.IsAbs(path) {
		found, err := exec.LookPath(path)
		if err != nil {
			return failf(name, "install "+path+", or give its absolute path in command", "%s is not found in PATH (%s)", path, os.Getenv("PATH"))
		}
		path = found
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return failf(name, "install the program, or correct command's first element", "%s does not exist", path)
	case err != nil:
		return failf(name, "check the permissions of "+filepath.Dir(path), "%s cannot be examined: %v", path, err)
	case !st.Mode().IsRegular():
		return failf(name, "point command's first element at the program", "%s is not a program (%s)", path, fileKind(st.Mode()))
	case st.Mode().Perm()&0o111 == 0:
		return failf(name, "chmod +x "+path, "%s is not executable (mode %04o)", path, st.Mode().Perm())
	}
	return okf(name, "%s exists and is executable (mode %04o)", path, st.Mode().Perm())
}
