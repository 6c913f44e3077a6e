package doctor

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// HTTPCheck asks GET /healthz on http.listen. The agent answering is OK;
// nothing listening is a warning (the agent is not running, which vigil
// doctor may well be run to find out before starting it); something else
// answering, or the address unusable, is a failure.
func HTTPCheck(listen string) Check {
	const name = "http"
	return Check{Name: name, Run: func(ctx context.Context) Result {
		addr := dialAddr(listen)
		if portOf(listen) == "0" {
			return warnf(name, "set http.listen to a fixed port (default 127.0.0.1:9817) so Prometheus and the nurses' links can find the agent",
				"http.listen %s takes any free port at each start: nothing to check", listen)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			return failf(name, "correct http.listen (host:port)", "http.listen %s gives no URL: %v", listen, err)
		}
		// No redirects and no proxy: the question is what listens here.
		client := &http.Client{
			Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := client.Do(req)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return notRunning(ctx, name, listen)
			}
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				return failf(name, "check what listens on "+listen+" (`ss -ltnp`); restart the agent (`systemctl restart vigil`) if it is hung",
					"http://%s/healthz gave no answer within the time allowed", addr)
			}
			return failf(name, "check what listens on "+listen+" (`ss -ltnp`)", "GET http://%s/healthz failed: %v", addr, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok":
			return okf(name, "the agent answers on http://%s (/healthz ok)", addr)
		case resp.StatusCode == http.StatusUnauthorized:
			return okf(name, "the agent answers on http://%s (authentication required)", addr)
		case resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "HTTPS"):
			return okf(name, "the agent answers on https://%s (TLS)", addr)
		}
		return failf(name, "another program holds http.listen "+listen+" (`ss -ltnp` names it): stop it or give the agent another port",
			"something other than the agent answers on http://%s: GET /healthz gave HTTP %d", addr, resp.StatusCode)
	}}
}

// notRunning tells a stopped agent (its address free, a warning) from an
// address it could not take.
func notRunning(ctx context.Context, name, listen string) Result {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", listen)
	if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
		return failf(name, "set http.listen to an address of this machine, e.g. 127.0.0.1:9817, or 0.0.0.0:9817 for Prometheus on another machine",
			"the agent is not running, and could not listen on http.listen %s: %v", listen, err)
	}
	if l != nil {
		l.Close()
	}
	return warnf(name, "start the agent: `systemctl start vigil` (and `journalctl -u vigil` for why it stopped)",
		"the agent is not running: nothing answers on %s", listen)
}
