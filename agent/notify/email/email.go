// Package email sends Vigil's alarm events as mail through an SMTP
// smarthost (RFC 5321): one plain-text mail per event, the priority marker
// first in the subject, the start, updates and end of one alarm occurrence
// threaded together by Message-ID, In-Reply-To and References.
//
// A server's 250 after the message says it took the mail, never that a
// person read it: a Delivered verdict is acceptance only, so the dispatcher
// must pair this channel with the acknowledge link and timed escalation
// (clinical.md 1, distributed alarm systems).
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// TLS modes, the values of Config.TLS.
const (
	// TLSStartTLS connects in clear and upgrades with STARTTLS (RFC 3207),
	// usually on port 587; a server that does not offer it gets nothing.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (RFC 8314 section 3.3),
	// usually on port 465.
	TLSImplicit = "tls"
	// TLSNone sends in clear, only to a relay on the same machine.
	TLSNone = "none"
)

// maxRecipients is the most To addresses a channel takes: RFC 5321 section
// 4.5.3.1.8 obliges servers to accept 100 recipients per message, no more.
const maxRecipients = 100

// maxReplyDetail bounds how much of a server's reply text is kept in an
// error: enough for its one-line reason.
const maxReplyDetail = 200

// Config of one email channel.
type Config struct {
	Name string
	// Smarthost is the SMTP server, "host:port". Required.
	Smarthost string
	// From is the sender, an RFC 5322 address such as
	// "Vigil <vigil@clinic.example>". Required.
	From string
	// To are the recipients, one address each; at least one.
	To []string
	// Username and PasswordFile, both or neither, log in with AUTH PLAIN,
	// over TLS only. A trailing newline in the file is ignored. Read once
	// by New.
	Username     string
	PasswordFile string
	// TLS is starttls (the default), tls or none; see TLSStartTLS,
	// TLSImplicit and TLSNone.
	TLS string
	// CAFile holds PEM certificates trusted for the server besides the
	// system's, for a clinic's own mail server. Optional.
	CAFile string
	// Hello is the name given in EHLO; "" is the machine's host name.
	Hello string
	// Timeout bounds one send, from dialling to the server's answer to the
	// message; 0 means notify.DefaultTimeout.
	Timeout time.Duration
	// Version is the agent's version, sent as X-Mailer: vigil/<version>;
	// "" sends vigil/dev.
	Version string
}

// ConfigError says a Config cannot work; New returns it. Key is the config
// key at fault (smarthost, password_file, ...), so a person knows what to
// fix.
type ConfigError struct {
	Channel string
	Key     string
	Reason  string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("email channel %q: %s: %s", e.Channel, e.Key, e.Reason)
}

// Errors for servers that lack what the config requires. Both give up:
// sending again to the same server cannot change its capabilities.
var (
	// ErrStartTLSNotOffered: tls is starttls and the server does not offer
	// STARTTLS, so the mail would cross the network in clear (and the
	// password with it). Vigil refuses to send.
	ErrStartTLSNotOffered = errors.New("the server does not offer STARTTLS; refusing to send in clear (tls: starttls)")
	// ErrAuthNotOffered: a username is set and the server offers no AUTH
	// PLAIN after TLS.
	ErrAuthNotOffered = errors.New("the server does not offer AUTH PLAIN; check the smarthost, or remove username and password_file")
)

// ReplyError is an SMTP reply refusing one step of the conversation.
type ReplyError struct {
	// Command is what the server refused: "greeting", "EHLO", "STARTTLS",
	// "AUTH", "MAIL FROM", "RCPT TO", "DATA" or "end of data".
	Command string
	// Recipient is the address a RCPT TO reply refers to, else "".
	Recipient string
	// Code is the reply code (RFC 5321 section 4.2): 4xx transient, 5xx
	// permanent.
	Code int
	// Message is the server's text on one line, bounded, with any
	// credential removed.
	Message string
}

func (e *ReplyError) Error() string {
	cmd := e.Command
	if e.Recipient != "" {
		cmd += " <" + e.Recipient + ">"
	}
	if e.Message == "" {
		return fmt.Sprintf("server refused %s: %d", cmd, e.Code)
	}
	return fmt.Sprintf("server refused %s: %d %s", cmd, e.Code, e.Message)
}

// Temporary reports a 4xx reply: the server may accept later.
func (e *ReplyError) Temporary() bool { return e.Code >= 400 && e.Code <= 499 }

// Notifier mails alarm events through one smarthost. Notify may be called
// from any goroutine; the Notifier holds no state between calls.
type Notifier struct {
	name      string
	smarthost string
	host      string
	mode      string
	tlsConfig *tls.Config // nil for TLSNone
	from      *mail.Address
	to        []*mail.Address
	username  string
	password  string
	// secrets are scrubbed from server replies before they reach an
	// error: a broken server may echo the credentials back.
	secrets []string
	hello   string
	timeout time.Duration
	mailer  string
	logger  *slog.Logger
	now     func() time.Time
	local   *time.Location
}

// New checks c and builds the channel. The password and CA files are read
// here, so a missing, empty or unreadable file fails at start rather than
// during an alarm. Errors name the config key and file, never the password.
func New(c Config, logger *slog.Logger) (*Notifier, error) {
	if logger == nil {
		logger = slog.Default()
	}
	bad := func(key, format string, a ...any) error {
		return &ConfigError{Channel: c.Name, Key: key, Reason: fmt.Sprintf(format, a...)}
	}
	if strings.TrimSpace(c.Name) == "" {
		return nil, bad("name", "is empty")
	}
	host, port, err := net.SplitHostPort(c.Smarthost)
	if err != nil || host == "" || !isHostName(host) {
		return nil, bad("smarthost", "must be host:port, such as mail.clinic.example:587")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return nil, bad("smarthost", "port %q is not a number from 1 to 65535", port)
	}
	from, err := parseAddress(c.From)
	if err != nil {
		return nil, bad("from", "%v", err)
	}
	if len(c.To) == 0 {
		return nil, bad("to", "needs at least one address")
	}
	if len(c.To) > maxRecipients {
		return nil, bad("to", "has %d addresses; at most %d (RFC 5321 section 4.5.3.1.8)", len(c.To), maxRecipients)
	}
	to := make([]*mail.Address, 0, len(c.To))
	for i, raw := range c.To {
		a, err := parseAddress(raw)
		if err != nil {
			return nil, bad("to", "address %d: %v", i+1, err)
		}
		if slices.ContainsFunc(to, func(b *mail.Address) bool { return strings.EqualFold(a.Address, b.Address) }) {
			return nil, bad("to", "address %d: %s is listed twice", i+1, a.Address)
		}
		to = append(to, a)
	}
	if c.Timeout < 0 {
		return nil, bad("timeout", "is negative")
	}

	mode := strings.ToLower(strings.TrimSpace(c.TLS))
	switch mode {
	case "":
		mode = TLSStartTLS
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !isLoopback(host) {
			// A mail in clear can be read and changed by anyone on the
			// path, and an alarm is no place for that. A relay on this
			// machine (postfix, msmtpd) takes it without touching the
			// network and does its own TLS onward.
			return nil, bad("tls", "none is allowed only for a relay on this machine (localhost, 127.0.0.1, ::1); %s is not: use starttls or tls", host)
		}
	default:
		return nil, bad("tls", "must be starttls, tls or none, not %q", c.TLS)
	}

	hello, err := helloName(c.Hello)
	if err != nil {
		return nil, bad("hello", "%v", err)
	}

	n := &Notifier{
		name:      c.Name,
		smarthost: net.JoinHostPort(host, port),
		host:      host,
		mode:      mode,
		from:      from,
		to:        to,
		hello:     hello,
		timeout:   c.Timeout,
		mailer:    "vigil/" + mailerVersion(c.Version),
		logger:    logger.With("channel", c.Name),
		now:       time.Now,
		local:     time.Local,
	}
	if n.timeout == 0 {
		n.timeout = notify.DefaultTimeout
	}

	if c.CAFile != "" && mode == TLSNone {
		return nil, bad("ca_file", "is set but tls is none; nothing would check the certificate")
	}
	if mode != TLSNone {
		roots, err := rootPool(c.CAFile)
		if err != nil {
			return nil, bad("ca_file", "%v", err)
		}
		n.tlsConfig = &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	}

	switch {
	case c.Username == "" && c.PasswordFile == "":
	case c.Username == "":
		return nil, bad("username", "is empty but password_file is set; AUTH needs both")
	case c.PasswordFile == "":
		return nil, bad("password_file", "is empty but username is set; AUTH needs both")
	case mode == TLSNone:
		return nil, bad("password_file", "is set but tls is none; Vigil sends a password over TLS only (a local relay needs none)")
	default:
		if !isPrintable(c.Username) {
			return nil, bad("username", "must not contain control characters")
		}
		password, err := notify.ReadPasswordFile(c.PasswordFile)
		if err != nil {
			return nil, bad("password_file", "%v", err)
		}
		if !isPrintable(password) {
			// AUTH PLAIN separates its fields with NUL (RFC 4616 section
			// 2); never quote the password.
			return nil, bad("password_file", "%s must hold one line with no control characters", c.PasswordFile)
		}
		n.username, n.password = c.Username, password
		n.secrets = []string{password, plainResponse(c.Username, password)}
	}

	if port == "465" && mode != TLSImplicit {
		n.logger.Warn("port 465 usually expects implicit TLS; set tls: tls if sends time out", "smarthost", n.smarthost)
	}
	if (port == "587" || port == "25") && mode == TLSImplicit {
		n.logger.Warn("ports 587 and 25 usually expect STARTTLS; set tls: starttls if sends fail", "smarthost", n.smarthost)
	}
	n.logger.Info("email channel ready", "smarthost", n.smarthost, "tls", mode, "auth", n.username != "",
		"recipients", len(n.to), "timeout", n.timeout)
	return n, nil
}

// Name is the channel's configured name.
func (n *Notifier) Name() string { return n.name }

// Notify mails ev to every recipient. The verdict follows the server: its
// 250 to the message Delivered; network errors, timeouts and 4xx replies
// Retry; 5xx replies, a missing STARTTLS or AUTH, and a certificate that
// does not verify GiveUp. When some recipients are refused and others
// accepted, the mail goes to the accepted ones and the verdict is Retry if
// any refusal was 4xx, else GiveUp; a retry reaches the accepted ones again
// with the same Message-ID.
func (n *Notifier) Notify(ctx context.Context, ev alarm.Event) notify.Result {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()

	msg := buildMessage(ev, messageParams{From: n.from, To: n.to, Date: n.now(), Local: n.local, Mailer: n.mailer})
	if msg.AckOmitted {
		// The link itself is not logged: it is a capability to acknowledge.
		n.logger.Warn("ack link left out of the mail: not an absolute http(s) URL", "alarm_id", ev.AlarmID, "event_id", ev.EventID)
	}
	refused, err := n.send(ctx, msg.Raw)
	res := n.result(ctx, refused, err)
	n.logger.Debug("email attempt done", "alarm_id", ev.AlarmID, "event_id", ev.EventID, "phase", string(ev.Phase),
		"message_id", msg.MessageID, "verdict", res.Verdict.String(), "err", res.Err)
	return res
}

// result turns the conversation's outcome into a verdict.
func (n *Notifier) result(ctx context.Context, refused []*ReplyError, err error) notify.Result {
	if err != nil {
		ctxErr := ctx.Err()
		if ctxErr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is ctx's, and a read can time out
			// a moment before ctx's own timer marks it done.
			ctxErr = context.DeadlineExceeded
		}
		if ctxErr != nil && !errors.Is(err, ctxErr) {
			// The deadline cut a read or write short: say so, and let
			// callers match context.DeadlineExceeded.
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return notify.Result{Verdict: verdictFor(err), Err: n.safeError(err)}
	}
	if len(refused) == 0 {
		return notify.Result{Verdict: notify.Delivered}
	}
	verdict := notify.GiveUp
	errs := make([]error, 0, len(refused))
	for _, r := range refused {
		if r.Temporary() {
			verdict = notify.Retry
		}
		errs = append(errs, r)
	}
	err = fmt.Errorf("sent to %d of %d recipients: %w", len(n.to)-len(refused), len(n.to), errors.Join(errs...))
	return notify.Result{Verdict: verdict, Err: n.safeError(err)}
}

// safeError prefixes the channel name and, should a credential have made
// it into the text anyway, replaces the error by its redacted text.
func (n *Notifier) safeError(err error) error {
	err = fmt.Errorf("email %s: %w", n.name, err)
	if text := err.Error(); notify.Redact(text, n.secrets...) != text {
		return errors.New(notify.Redact(text, n.secrets...))
	}
	return err
}

// verdictFor classifies a failed conversation: what retrying can fix
// (network, timeouts, 4xx) Retry, what it cannot (5xx, missing STARTTLS
// or AUTH, a certificate that does not verify, a server that does not
// speak SMTP or TLS) GiveUp.
func verdictFor(err error) notify.Verdict {
	var reply *ReplyError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var netErr net.Error
	var protoErr textproto.ProtocolError
	switch {
	case errors.As(err, &reply):
		if reply.Temporary() {
			return notify.Retry
		}
		return notify.GiveUp
	case errors.Is(err, ErrStartTLSNotOffered), errors.Is(err, ErrAuthNotOffered),
		errors.As(err, &certErr), errors.As(err, &recordErr), errors.As(err, &protoErr):
		return notify.GiveUp
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return notify.Retry
	}
	return notify.GiveUp
}

// send holds one SMTP conversation. It returns the recipients the server
// refused when it took the message for the others, or the error that
// stopped it.
func (n *Notifier) send(ctx context.Context, raw []byte) (refused []*ReplyError, err error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", n.smarthost)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", n.smarthost, err)
	}
	// net/smtp takes no context: the connection's deadline bounds every
	// read and write of every step, and cancelling ctx cuts it at once.
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if n.mode == TLSImplicit {
		tlsConn := tls.Client(conn, n.tlsConfig)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS with %s%s: %w", n.smarthost, tlsHint(err), err)
		}
		conn = tlsConn
	}
	client, err := smtp.NewClient(conn, n.host)
	if err != nil {
		conn.Close()
		return nil, n.stepError("greeting", "", err)
	}
	defer client.Close()

	if err := client.Hello(n.hello); err != nil {
		return nil, n.stepError("EHLO", "", err)
	}
	if n.mode == TLSStartTLS {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			return nil, ErrStartTLSNotOffered
		}
		if err := client.StartTLS(n.tlsConfig); err != nil {
			return nil, n.stepError("STARTTLS", "", err)
		}
	}
	if n.username != "" {
		// Extension reads the EHLO answer given after TLS, as RFC 3207
		// section 4.2 requires: the one before it may be forged.
		ok, mechs := client.Extension("AUTH")
		if !ok || !slices.Contains(strings.Fields(strings.ToUpper(mechs)), "PLAIN") {
			return nil, ErrAuthNotOffered
		}
		if err := client.Auth(smtp.PlainAuth("", n.username, n.password, n.host)); err != nil {
			return nil, n.stepError("AUTH", "", err)
		}
	}
	if err := client.Mail(n.from.Address); err != nil {
		return nil, n.stepError("MAIL FROM", "", err)
	}
	for _, to := range n.to {
		err := client.Rcpt(to.Address)
		if err == nil {
			continue
		}
		err = n.stepError("RCPT TO", to.Address, err)
		var reply *ReplyError
		if !errors.As(err, &reply) {
			return nil, err
		}
		refused = append(refused, reply)
	}
	if len(refused) == len(n.to) {
		_ = client.Quit()
		return nil, errors.Join(asErrors(refused)...)
	}
	w, err := client.Data()
	if err != nil {
		return nil, n.stepError("DATA", "", err)
	}
	if _, err := w.Write(raw); err != nil {
		return nil, fmt.Errorf("sending the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, n.stepError("end of data", "", err)
	}
	// The server took the message with its reply to the end of data; a
	// failed QUIT cannot take that back.
	_ = client.Quit()
	return refused, nil
}

// stepError turns a reply from net/smtp into a ReplyError with the
// credentials removed, and names the step of any other error.
func (n *Notifier) stepError(command, recipient string, err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return &ReplyError{
			Command:   command,
			Recipient: recipient,
			Code:      tp.Code,
			Message:   notify.OneLine(notify.Redact(tp.Msg, n.secrets...), maxReplyDetail),
		}
	}
	if command == "greeting" && errors.Is(err, os.ErrDeadlineExceeded) && n.mode != TLSImplicit {
		return fmt.Errorf("no greeting from %s (a port 465 server waits for TLS: set tls: tls): %w", n.smarthost, err)
	}
	return fmt.Errorf("%s%s: %w", command, tlsHint(err), err)
}

// tlsHint says what to change when TLS fails for a reason of config.
func tlsHint(err error) string {
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &certErr):
		return " (the server's certificate does not verify; for a clinic's own CA set ca_file)"
	case errors.As(err, &recordErr):
		return " (the server does not speak TLS first; ports 587 and 25 need tls: starttls)"
	}
	return ""
}

func asErrors(replies []*ReplyError) []error {
	errs := make([]error, len(replies))
	for i, r := range replies {
		errs[i] = r
	}
	return errs
}

// plainResponse is the base64 AUTH PLAIN response (RFC 4616) net/smtp
// sends for these credentials: a server echoing it back would leak the
// password, so it is redacted like the password.
func plainResponse(username, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + username + "\x00" + password))
}

// parseAddress reads one RFC 5322 address and keeps only what every SMTP
// server takes in MAIL FROM and RCPT TO: an ASCII dot-atom local part and
// a host-name domain. Quoted local parts, address literals and
// internationalised addresses (which need SMTPUTF8) are refused.
func parseAddress(raw string) (*mail.Address, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("is empty")
	}
	a, err := mail.ParseAddress(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not one address such as Vigil <vigil@clinic.example>: %v", raw, err)
	}
	at := strings.LastIndexByte(a.Address, '@')
	local, domain := a.Address[:at], a.Address[at+1:]
	if !isDotAtom(local) || !isHostName(domain) || !strings.Contains(domain, ".") && !strings.EqualFold(domain, "localhost") {
		return nil, fmt.Errorf("%q: use a plain ASCII address such as vigil@clinic.example", a.Address)
	}
	if !isPrintable(a.Name) {
		return nil, fmt.Errorf("the name of %q contains control characters", a.Address)
	}
	return a, nil
}

// isDotAtom reports whether s is an RFC 5322 dot-atom-text (section 3.2.3).
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '.' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

// isHostName accepts a DNS name or an IP address of letters, digits, '-',
// '.' and (for IPv6) ':'.
func isHostName(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if s == "" || len(s) > 253 || s[0] == '.' || s[0] == '-' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isAlnum(c) || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isLoopback: localhost, or an IP address on the loopback interface. No
// name lookup: a name that resolves to loopback today may not tomorrow.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// helloName is the EHLO name: the configured one, checked, or the host
// name, or "localhost" when the host name is unusable. RFC 5321 section
// 4.1.1.1 asks for the client's domain name or an address literal.
func helloName(configured string) (string, error) {
	if configured != "" {
		if literal, ok := strings.CutPrefix(configured, "["); ok {
			literal, ok = strings.CutSuffix(literal, "]")
			literal = strings.TrimPrefix(literal, "IPv6:")
			if ok && net.ParseIP(literal) != nil {
				return configured, nil
			}
		} else if isHostName(configured) && net.ParseIP(configured) == nil {
			return configured, nil
		}
		return "", fmt.Errorf("%q must be a domain name (letters, digits, '-', '.') or an address literal such as [192.0.2.1]", configured)
	}
	if h, err := os.Hostname(); err == nil && isHostName(h) && net.ParseIP(h) == nil {
		return h, nil
	}
	return "localhost", nil
}

// rootPool is the system's trusted roots plus the certificates of caFile.
func rootPool(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil // nil RootCAs: crypto/tls uses the system's roots
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", caFile, unwrapPath(err))
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return pool, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// mailerVersion keeps X-Mailer to one short printable token.
func mailerVersion(v string) string {
	v = strings.TrimSpace(v)
	if v == "" || !isVisibleASCII(v) || len(v) > 64 {
		return "dev"
	}
	return v
}

// isPrintable rejects control characters (header and command injection,
// line breaks) and invalid UTF-8; spaces and non-ASCII letters pass.
func isPrintable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}
