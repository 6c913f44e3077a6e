package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-monitor/vigil/agent/config"
)

// agentFlags locate a running agent: its config file (http.listen) or an
// explicit address.
type agentFlags struct {
	configPath   string
	addr         string
	username     string
	passwordFile string
	caFile       string
	acc          *agentAccess // set by baseURL
}

func (f *agentFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "config file of the running agent (its http.listen, TLS certificate and whether it needs a password are used)")
	cmd.Flags().StringVar(&f.addr, "addr", "", "address of the running agent's HTTP listener, e.g. 127.0.0.1:9817 or https://host:9817")
	cmd.Flags().StringVar(&f.username, "username", "", "basic-auth user, when the agent's web config has users (or VIGIL_USERNAME)")
	cmd.Flags().StringVar(&f.passwordFile, "password-file", "", "file holding the basic-auth password (or VIGIL_PASSWORD)")
	cmd.Flags().StringVar(&f.caFile, "ca-file", "", "CA certificate to verify an https agent with (default: with --config, its own certificate is pinned; else the system roots)")
}

// baseURL is the running agent's HTTP URL; it also prepares the TLS and
// credentials httpClient uses.
func (f *agentFlags) baseURL() (string, error) {
	addr := f.addr
	webConfig := ""
	switch {
	case addr != "" && f.configPath != "":
		return "", errors.New("give --config or --addr, not both")
	case addr == "" && f.configPath == "":
		addr = config.DefaultHTTPListen
	case addr == "":
		cfg, err := config.Load(f.configPath)
		if err != nil {
			return "", err
		}
		addr, webConfig = cfg.HTTP.Listen, cfg.HTTP.WebConfigFile
	}
	acc, tlsOn, err := f.access(webConfig)
	if err != nil {
		return "", err
	}
	f.acc = acc
	if hasScheme(addr) {
		return strings.TrimRight(addr, "/"), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("agent address %q: %w", addr, err)
	}
	// An agent listening on all interfaces is reached on this machine.
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return schemeFor(tlsOn) + net.JoinHostPort(host, port), nil
}

func newNIBPCommand() *cobra.Command {
	var (
		flags  agentFlags
		device string
	)
	cmd := &cobra.Command{
		Use:   "nibp",
		Short: "Blood-pressure measurements on a running agent",
	}
	start := &cobra.Command{
		Use:   "start --device ID",
		Short: "Start a blood-pressure measurement now",
		Long: `Ask the running agent to start a cuff measurement on an NIBP monitor that
takes commands (suntech-advantage). The result is published like every
reading. A measurement already running is not interrupted: the request is
refused.`,
		Example: `  vigil nibp start --device nibp-1 --config /etc/vigil/vigil.yaml
  vigil nibp start --device nibp-1 --addr 127.0.0.1:9817`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if device == "" {
				return errors.New("--device ID is required")
			}
			base, err := flags.baseURL()
			if err != nil {
				return err
			}
			return sendCommand(cmd.OutOrStdout(), flags.httpClient(10*time.Second), base, device, "nibp_start")
		},
	}
	flags.register(start)
	start.Flags().StringVar(&device, "device", "", "id of the NIBP device in the agent's config")
	cmd.AddCommand(start)
	return cmd
}

func sendCommand(out io.Writer, client *http.Client, base, device, command string) error {
	u := base + "/api/v1/devices/" + url.PathEscape(device) + "/commands/" + url.PathEscape(command)
	resp, err := client.Post(u, "application/json", nil)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s (is vigil running, and is this its http.listen?): %w", base, err)
	}
	defer resp.Body.Close()
	var res struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&res); err != nil {
		return fmt.Errorf("agent answered %s without a result", resp.Status)
	}
	if !res.OK {
		return fmt.Errorf("%s on %s refused: %s", command, device, res.Error)
	}
	fmt.Fprintf(out, "%s sent to %s\n", command, device)
	return nil
}
