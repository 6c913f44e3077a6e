package acklink

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// chromiumPath finds the browser the way a Debian or Ubuntu machine names it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	var errs []error
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		p, err := exec.LookPath(name)
		if err == nil {
			return p
		}
		errs = append(errs, err)
	}
	requireEnv(t, "no Chromium found", errors.Join(errs...))
	return ""
}

// Hosts Chromium resolves to 127.0.0.1 (--host-resolver-rules): a clinic
// LAN name served over plain http, which Chromium does not count as a
// "potentially trustworthy" origin (so it sends no Sec-Fetch-Site), and an
// attacker's site.
const (
	lanHost      = "room-1.clinic.lan"
	attackerHost = "attacker.example"
)

// postSeen is what the agent's server saw of one POST.
type postSeen struct{ secFetchSite, origin string }

// TestBrowserPhoneFlow drives headless Chromium as the nurse's phone and as
// an attacker's page:
//   - a cross-site page that auto-submits a POST to the link (with the right
//     confirm value: the worst case) does not acknowledge;
//   - the nurse opens the link, sees the alarm, types a name, presses
//     Acknowledge and sees the confirmation; the agent got (alarm, name,
//     "phone link");
//   - re-submitting (reload of the POST) and re-opening say "already".
//
// Twice: on a loopback origin, where Chromium sends Sec-Fetch-Site, and on
// a plain-http LAN name, where only the Origin header tells (the case that
// made Referrer-Policy same-origin rather than no-referrer: see handler.go).
func TestBrowserPhoneFlow(t *testing.T) {
	browser := chromiumPath(t)

	// The agent's server, recording the headers of every POST.
	var (
		mu    sync.Mutex
		posts []postSeen
	)
	srv := httptest.NewUnstartedServer(nil)
	r := newRoom(t, "http://"+srv.Listener.Addr().String())
	links := r.links.Handler()
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost {
			mu.Lock()
			posts = append(posts, postSeen{req.Header.Get("Sec-Fetch-Site"), req.Header.Get("Origin")})
			mu.Unlock()
		}
		links.ServeHTTP(w, req)
	})
	srv.Start()
	defer srv.Close()
	_, agentPort, _ := net.SplitHostPort(srv.Listener.Addr().String())
	postCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(posts)
	}
	lastPost := func() postSeen {
		mu.Lock()
		defer mu.Unlock()
		if len(posts) == 0 {
			return postSeen{}
		}
		return posts[len(posts)-1]
	}

	// The attacker's site: a page that posts a form to the link as soon as
	// it has loaded. It needs a script; the attacker's page has no CSP.
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><title>cute cats</title>
<form id="f" method="post" action="%s">
<input type="hidden" name="confirm" value="%s"><input type="hidden" name="by" value="attacker">
</form>
<script>window.addEventListener("load", function () { setTimeout(function () { document.getElementById("f").submit(); }, 0); });</script>`,
			html.EscapeString(req.URL.Query().Get("target")), html.EscapeString(req.URL.Query().Get("confirm")))
	}))
	defer attacker.Close()
	_, attackerPort, _ := net.SplitHostPort(attacker.Listener.Addr().String())

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.Flag("host-resolver-rules", "MAP "+lanHost+" 127.0.0.1, MAP "+attackerHost+" 127.0.0.1"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc() // waits for the browser to exit
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(tabCtx, 60*time.Second)
	defer cancel()

	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return s
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	for i, sc := range []struct {
		name          string
		agent, attack string // host:port of each origin
		wantFetchSite string // Sec-Fetch-Site the agent should see on the attack
	}{
		{"loopback", "127.0.0.1:" + agentPort, "localhost:" + attackerPort, "cross-site"},
		{"plain-http LAN name", lanHost + ":" + agentPort, attackerHost + ":" + attackerPort, ""},
	} {
		t.Logf("scenario %s", sc.name)
		var ev alarm.Event
		if i == 0 {
			ev = r.raise(88, "spo2-low-medium")
		} else {
			r.recover() // the first occurrence ends; a new one starts
			ev = r.raise(88, "spo2-low-medium")
		}
		base := "http://" + sc.agent
		link := base + strings.TrimPrefix(r.links.URL(ev), r.links.baseURL)
		tok, err := r.links.Verify(link[strings.LastIndex(link, "/")+1:])
		if err != nil {
			t.Fatal(err)
		}
		acksBefore := len(r.ackCalls())

		// 1. The attack.
		attackURL := "http://" + sc.attack + "/?target=" + url.QueryEscape(link) + "&confirm=" + r.links.confirmValue(tok)
		do("attack", chromedp.Navigate(attackURL), chromedp.WaitVisible(chromedp.ID("heading")))
		if h := text("heading"); h != "Request refused" {
			t.Errorf("%s: the attack's POST got %q, want the refusal", sc.name, h)
		}
		seen := lastPost()
		if seen.secFetchSite != sc.wantFetchSite || seen.origin != "http://"+sc.attack {
			t.Errorf("%s: the attack's POST carried Sec-Fetch-Site %q, Origin %q; want %q, %q",
				sc.name, seen.secFetchSite, seen.origin, sc.wantFetchSite, "http://"+sc.attack)
		}
		if n := len(r.ackCalls()); n != acksBefore {
			t.Fatalf("%s: the cross-site POST acknowledged the alarm", sc.name)
		}
		if st := r.state(lowMedium); st != alarm.Active {
			t.Fatalf("%s: alarm %s after the attack, want active", sc.name, st)
		}

		// 2. The nurse.
		do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("acknowledge")))
		if got := text("alarm-text"); got != ev.Text {
			t.Errorf("%s: alarm text %q, want %q", sc.name, got, ev.Text)
		}
		if got := text("priority"); got != "** medium" {
			t.Errorf("%s: priority %q", sc.name, got)
		}
		name := fmt.Sprintf("RN Kim %d", i+1)
		do("type the name", chromedp.SendKeys(chromedp.ID("by"), name))
		res, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("acknowledge")))
		if err != nil {
			t.Fatalf("%s: press Acknowledge: %v", sc.name, err)
		}
		if res.Status != http.StatusOK {
			t.Errorf("%s: POST status %d", sc.name, res.Status)
		}
		if h := text("heading"); h != "Acknowledged" {
			t.Fatalf("%s: after Acknowledge the page says %q", sc.name, h)
		}
		if m := text("message"); !strings.Contains(m, "Thank you, "+name) {
			t.Errorf("%s: message %q", sc.name, m)
		}
		calls := r.ackCalls()
		if len(calls) != acksBefore+1 || calls[len(calls)-1] != (ackCall{lowMedium, name, "phone link"}) {
			t.Errorf("%s: Acknowledge calls %+v, want one more of (%s, %s, phone link)", sc.name, calls, lowMedium, name)
		}
		if seen := lastPost(); seen.origin != base || (sc.wantFetchSite != "" && seen.secFetchSite != "same-origin") {
			t.Errorf("%s: the nurse's POST carried Sec-Fetch-Site %q, Origin %q", sc.name, seen.secFetchSite, seen.origin)
		}

		// 3. Re-submit (reload of the POST result), then re-open.
		before := postCount()
		do("reload", chromedp.Reload())
		if h := text("heading"); !strings.Contains(h, "already") {
			t.Errorf("%s: re-submitting shows %q, want \"already\"", sc.name, h)
		}
		if postCount() != before+1 {
			t.Errorf("%s: the reload did not re-submit the POST", sc.name)
		}
		do("re-open", chromedp.Navigate(link))
		if h := text("heading"); !strings.Contains(h, "already") {
			t.Errorf("%s: re-opening shows %q, want \"already\"", sc.name, h)
		}
		if n := len(r.ackCalls()); n != acksBefore+1 {
			t.Errorf("%s: %d acknowledgements after re-submitting, want %d", sc.name, n, acksBefore+1)
		}
	}
}
