package email

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/notify"
)

func validConfig(t *testing.T) Config {
	return Config{
		Name:         "mail",
		Smarthost:    "mail.clinic.example:587",
		From:         "Vigil <vigil@clinic.example>",
		To:           []string{"nurse@clinic.example"},
		Username:     "vigil",
		PasswordFile: writeSecret(t, testPassword+"\n"),
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	manyTo := make([]string, maxRecipients+1)
	for i := range manyTo {
		manyTo[i] = "n" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "@clinic.example"
	}
	tests := []struct {
		name   string
		change func(c *Config)
		key    string
		reason string // a part of the reason
	}{
		{"no name", func(c *Config) { c.Name = " " }, "name", "empty"},
		{"no smarthost", func(c *Config) { c.Smarthost = "" }, "smarthost", "host:port"},
		{"smarthost without port", func(c *Config) { c.Smarthost = "mail.clinic.example" }, "smarthost", "host:port"},
		{"smarthost port 0", func(c *Config) { c.Smarthost = "mail.clinic.example:0" }, "smarthost", "port"},
		{"smarthost port name", func(c *Config) { c.Smarthost = "mail.clinic.example:smtp" }, "smarthost", "port"},
		{"smarthost with CRLF", func(c *Config) { c.Smarthost = "mail.clinic.example\r\nX:587" }, "smarthost", "host:port"},
		{"no from", func(c *Config) { c.From = "" }, "from", "empty"},
		{"from not an address", func(c *Config) { c.From = "vigil" }, "from", "not one address"},
		{"from two addresses", func(c *Config) { c.From = "a@clinic.example, b@clinic.example" }, "from", "not one address"},
		{"from quoted local part", func(c *Config) { c.From = `"a b"@clinic.example` }, "from", "plain ASCII"},
		{"from non-ASCII", func(c *Config) { c.From = "vigíl@clinic.example" }, "from", "plain ASCII"},
		{"from bare domain", func(c *Config) { c.From = "vigil@clinic" }, "from", "plain ASCII"},
		{"no to", func(c *Config) { c.To = nil }, "to", "at least one"},
		{"to invalid", func(c *Config) { c.To = []string{"nurse@clinic.example", "nurse"} }, "to", "address 2"},
		{"to empty entry", func(c *Config) { c.To = []string{""} }, "to", "empty"},
		{"to twice", func(c *Config) { c.To = []string{"nurse@clinic.example", "Nurse <NURSE@clinic.example>"} }, "to", "twice"},
		{"too many to", func(c *Config) { c.To = manyTo }, "to", "at most 100"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout", "negative"},
		{"unknown tls", func(c *Config) { c.TLS = "ssl" }, "tls", "starttls, tls or none"},
		{"tls none to a remote host", func(c *Config) { c.TLS = TLSNone; c.Username, c.PasswordFile = "", "" }, "tls", "this machine"},
		{"tls none with a password", func(c *Config) { c.TLS = TLSNone; c.Smarthost = "127.0.0.1:25" }, "password_file", "TLS only"},
		{"tls none with ca_file", func(c *Config) {
			c.TLS, c.Smarthost, c.Username, c.PasswordFile, c.CAFile = TLSNone, "localhost:25", "", "", notPEM
		}, "ca_file", "tls is none"},
		{"ca_file missing", func(c *Config) { c.CAFile = filepath.Join(dir, "missing.pem") }, "ca_file", "no such file"},
		{"ca_file not PEM", func(c *Config) { c.CAFile = notPEM }, "ca_file", "no PEM certificate"},
		{"password without username", func(c *Config) { c.Username = "" }, "username", "needs both"},
		{"username without password", func(c *Config) { c.PasswordFile = "" }, "password_file", "needs both"},
		{"password file missing", func(c *Config) { c.PasswordFile = filepath.Join(dir, "missing") }, "password_file", "no such file"},
		{"password file empty", func(c *Config) { c.PasswordFile = writeSecret(t, "\n") }, "password_file", "holds no secret"},
		{"password with control characters", func(c *Config) { c.PasswordFile = writeSecret(t, "a\x00b") }, "password_file", "control characters"},
		{"username with control characters", func(c *Config) { c.Username = "vigil\r\n" }, "username", "control characters"},
		{"hello with a space", func(c *Config) { c.Hello = "room 1" }, "hello", "domain name"},
		{"hello bad literal", func(c *Config) { c.Hello = "[not-an-ip]" }, "hello", "address literal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.change(&c)
			n, err := New(c, slog.New(slog.DiscardHandler))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("New = %v, %v; want a ConfigError", n, err)
			}
			if ce.Key != tt.key || !strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("ConfigError key %q reason %q; want key %q, reason containing %q", ce.Key, ce.Reason, tt.key, tt.reason)
			}
			if ce.Channel != c.Name || !strings.HasPrefix(err.Error(), `email channel "`+c.Name+`": `+tt.key+": ") {
				t.Errorf("error %q does not name the channel and key", err)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error %q leaks the password", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	n, err := New(validConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "mail" || n.mode != TLSStartTLS || n.timeout != notify.DefaultTimeout || n.mailer != "vigil/dev" {
		t.Errorf("defaults: name %q mode %q timeout %v mailer %q", n.Name(), n.mode, n.timeout, n.mailer)
	}
	if want, _ := helloName(""); n.hello != want || n.hello == "" {
		t.Errorf("hello %q, want the host name %q", n.hello, want)
	}
	if n.password != testPassword || n.tlsConfig == nil || n.tlsConfig.ServerName != "mail.clinic.example" || n.tlsConfig.RootCAs != nil {
		t.Errorf("password or TLS config not set up as configured")
	}

	for _, host := range []string{"localhost:25", "127.0.0.1:25", "[::1]:25"} {
		c := Config{Name: "relay", Smarthost: host, TLS: "none", From: "vigil@clinic.example", To: []string{"a@clinic.example"}}
		if _, err := New(c, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("tls none to %s: %v", host, err)
		}
	}
	for _, hello := range []string{"room1.clinic.example", "[192.0.2.1]", "[IPv6:2001:db8::1]"} {
		c := validConfig(t)
		c.Hello = hello
		if _, err := New(c, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("hello %q: %v", hello, err)
		}
	}
}
