package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// webConfigView is the part of an exporter-toolkit web config the CLI
// needs to reach the agent it protects.
type webConfigView struct {
	TLS struct {
		CertFile string `yaml:"cert_file"`
	} `yaml:"tls_server_config"`
	Users map[string]string `yaml:"basic_auth_users"`
}

// agentAccess is how the CLI talks to the agent: its base URL, the
// certificate it must present (pinned: the agent's own cert_file, read
// through the config), and the basic-auth credentials.
type agentAccess struct {
	pinned   []byte // DER of the certificate the agent serves; nil: normal verification
	roots    *x509.CertPool
	username string
	password string
}

// readWebConfig reads the agent's web config for the CLI: whether TLS is
// on (and the certificate to pin), and whether basic auth is required.
func readWebConfig(path string) (webConfigView, error) {
	var v webConfigView
	data, err := os.ReadFile(path)
	if err != nil {
		return v, fmt.Errorf("http.web_config_file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&v); err != nil && !errors.Is(err, io.EOF) { // EOF: an empty file
		return v, fmt.Errorf("http.web_config_file %s: %w", path, err)
	}
	if v.TLS.CertFile != "" && !filepath.IsAbs(v.TLS.CertFile) {
		v.TLS.CertFile = filepath.Join(filepath.Dir(path), v.TLS.CertFile)
	}
	return v, nil
}

// access prepares TLS and credentials from the flags and, with --config,
// the agent's web config.
func (f *agentFlags) access(webConfig string) (*agentAccess, bool, error) {
	a := &agentAccess{username: f.username}
	if a.username == "" {
		a.username = os.Getenv("VIGIL_USERNAME")
	}
	switch {
	case f.passwordFile != "":
		pw, err := notify.ReadSecretFile(f.passwordFile)
		if err != nil {
			return nil, false, fmt.Errorf("--password-file: %w", err)
		}
		a.password = pw
	default:
		a.password = os.Getenv("VIGIL_PASSWORD")
	}
	if f.caFile != "" {
		pemData, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, false, fmt.Errorf("--ca-file: %w", err)
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(pemData) {
			return nil, false, fmt.Errorf("--ca-file %s holds no PEM certificate", f.caFile)
		}
	}
	tlsOn := false
	if webConfig != "" {
		v, err := readWebConfig(webConfig)
		if err != nil {
			return nil, false, err
		}
		if v.TLS.CertFile != "" {
			tlsOn = true
			if a.roots == nil {
				// The CLI runs on the agent's machine and reads its
				// config: it trusts exactly the certificate the agent
				// serves, whatever CA signed it and whatever name it
				// carries (it is reached at 127.0.0.1).
				pemData, err := os.ReadFile(v.TLS.CertFile)
				if err != nil {
					return nil, false, fmt.Errorf("the agent's certificate (web config cert_file): %w", err)
				}
				block, _ := pem.Decode(pemData)
				if block == nil {
					return nil, false, fmt.Errorf("the agent's certificate %s is not PEM", v.TLS.CertFile)
				}
				a.pinned = block.Bytes
			}
		}
		if len(v.Users) > 0 && (a.username == "" || a.password == "") {
			return nil, false, errors.New("the agent requires basic auth: give --username (or VIGIL_USERNAME) and --password-file (or VIGIL_PASSWORD)")
		}
	}
	return a, tlsOn, nil
}

// httpClient is an HTTP client for the agent, with timeout.
func (f *agentFlags) httpClient(timeout time.Duration) *http.Client {
	a := f.acc
	if a == nil {
		return &http.Client{Timeout: timeout}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: a.roots}
	if a.pinned != nil {
		pinned := a.pinned
		tr.TLSClientConfig.InsecureSkipVerify = true // replaced by the pin below
		tr.TLSClientConfig.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], pinned) {
				return errors.New("the agent presented another certificate than its web config's cert_file")
			}
			return nil
		}
	}
	var rt http.RoundTripper = tr
	if a.username != "" {
		rt = basicAuth{next: tr, user: a.username, password: a.password}
	}
	return &http.Client{Timeout: timeout, Transport: rt}
}

// basicAuth adds the credentials to every request.
type basicAuth struct {
	next           http.RoundTripper
	user, password string
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.password)
	return b.next.RoundTrip(r)
}

// schemeFor gives the URL scheme of an agent address.
func schemeFor(tlsOn bool) string {
	if tlsOn {
		return "https://"
	}
	return "http://"
}

// trimScheme is used when --addr already holds a URL.
func hasScheme(addr string) bool { return strings.Contains(addr, "://") }
