package acklink

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

const (
	lowMedium = "spo2-low-medium/" + oximeter
	lowHigh   = "spo2-low-high/" + oximeter
)

// site is a room whose links are served by an httptest server; the base
// URL is the server's, as phones would reach the agent.
type site struct {
	*room
	srv *httptest.Server
}

func newSite(t *testing.T) *site {
	t.Helper()
	// An unstarted server already listens, so the base URL is known
	// before the handler is built.
	srv := httptest.NewUnstartedServer(nil)
	r := newRoom(t, "http://"+srv.Listener.Addr().String())
	srv.Config.Handler = r.links.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return &site{room: r, srv: srv}
}

// link returns a fresh link for the alarm's present event.
func (s *site) link(alarmID string) string {
	s.t.Helper()
	ev, ok := s.current(alarmID)
	if !ok {
		s.t.Fatalf("no alarm %s", alarmID)
	}
	u := s.links.URL(ev)
	if !strings.HasPrefix(u, s.srv.URL+"/ack/") {
		s.t.Fatalf("link %q not under %s/ack/", u, s.srv.URL)
	}
	return u
}

type response struct {
	status int
	header http.Header
	body   string
}

func (s *site) do(req *http.Request) response {
	s.t.Helper()
	res, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

func (s *site) get(link string) response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, link, nil)
	return s.do(req)
}

// post submits the form as a same-origin browser would, unless header
// overrides say otherwise ("" deletes a header).
func (s *site) post(link string, form url.Values, header map[string]string) response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, link, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", s.srv.URL)
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return s.do(req)
}

var confirmField = regexp.MustCompile(`name="confirm" value="([A-Za-z0-9_-]+)"`)

// confirmOf GETs the page and returns its confirm value.
func (s *site) confirmOf(link string) string {
	s.t.Helper()
	res := s.get(link)
	m := confirmField.FindStringSubmatch(res.body)
	if m == nil {
		s.t.Fatalf("no confirm field on the page (status %d):\n%s", res.status, res.body)
	}
	return m[1]
}

func form(confirm, by string) url.Values {
	return url.Values{"confirm": {confirm}, "by": {by}}
}

func expectPage(t *testing.T, res response, status int, contains ...string) {
	t.Helper()
	if res.status != status {
		t.Errorf("status %d, want %d; body:\n%s", res.status, status, res.body)
	}
	for _, c := range contains {
		if !strings.Contains(res.body, c) {
			t.Errorf("page lacks %q:\n%s", c, res.body)
		}
	}
	checkHeaders(t, res.header)
}

func checkHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "same-origin",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": contentSecurityPolicy,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func (s *site) expectAcks(want ...ackCall) {
	s.t.Helper()
	if got := s.ackCalls(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		s.t.Errorf("Acknowledge calls %+v, want %+v", got, want)
	}
}

func TestGetShowsAlarmAndChangesNothing(t *testing.T) {
	s := newSite(t)
	ev := s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	s.clock.Advance(3 * time.Minute)

	for range 3 { // a link previewer, a prefetch and the nurse
		res := s.get(link)
		expectPage(t, res, http.StatusOK,
			"Acknowledge this alarm?",
			escaped(ev.Text), // starts with the ** marker
			"Room 1", "** medium", "active",
			ev.Onset.Local().Format("15:04:05"), "3m ago",
			`name="by"`, `id="acknowledge"`)
		if !strings.HasPrefix(ev.Text, "**") {
			t.Errorf("event text %q lacks the medium marker", ev.Text)
		}
	}
	req, _ := http.NewRequest(http.MethodHead, link, nil)
	if res := s.do(req); res.status != http.StatusOK || res.body != "" {
		t.Errorf("HEAD: %d %q", res.status, res.body)
	}
	s.expectAcks()
	if st := s.state(lowMedium); st != alarm.Active {
		t.Errorf("after GETs the alarm is %s, want active", st)
	}
}

// escaped escapes like html/template does for text, for comparing.
func escaped(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;").Replace(s)
}

func TestPostAcknowledgesOnce(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	confirm := s.confirmOf(link)

	res := s.post(link, form(confirm, "  RN Kim\n"), nil)
	expectPage(t, res, http.StatusOK, "Acknowledged", "Thank you, RN Kim.", "acknowledged")
	s.expectAcks(ackCall{lowMedium, "RN Kim", "phone link"})
	if st := s.state(lowMedium); st != alarm.Acknowledged {
		t.Errorf("alarm %s, want acknowledged", st)
	}

	// The same link again: refused, the callback is not called again.
	res = s.post(link, form(confirm, "someone else"), nil)
	expectPage(t, res, http.StatusConflict, "Link already used")
	expectPage(t, s.get(link), http.StatusConflict, "Link already used")
	if strings.Contains(s.get(link).body, `name="confirm"`) {
		t.Error("a used link's page still has the form")
	}

	// A fresh link for the acknowledged alarm (a repeat message) says so.
	fresh := s.link(lowMedium)
	res = s.get(fresh)
	expectPage(t, res, http.StatusConflict, "Already acknowledged")
	if strings.Contains(res.body, `name="confirm"`) {
		t.Error("the page of an acknowledged alarm has the form")
	}
	res = s.post(fresh, form(s.links.confirmValue(mustVerify(t, s.links, fresh)), "x"), nil)
	expectPage(t, res, http.StatusConflict, "Already acknowledged")
	s.expectAcks(ackCall{lowMedium, "RN Kim", "phone link"})

	logs := s.logs.String()
	if !strings.Contains(logs, "alarm="+lowMedium) || !strings.Contains(logs, `by="RN Kim"`) {
		t.Errorf("the log lacks the alarm id or who:\n%s", logs)
	}
}

func mustVerify(t *testing.T, l *Links, link string) Token {
	t.Helper()
	tok, err := l.Verify(link[strings.LastIndex(link, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestPostWithoutNameIsUnnamed(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	res := s.post(link, url.Values{"confirm": {s.confirmOf(link)}}, nil)
	expectPage(t, res, http.StatusOK, "Acknowledged")
	s.expectAcks(ackCall{lowMedium, UnnamedBy, How})
}

func TestPostAcknowledgesLatchedAlarm(t *testing.T) {
	s := newSite(t)
	s.raise(82, "spo2-low-high") // high priority latches (clinical.md 1)
	link := s.link(lowHigh)
	s.recover()
	if st := s.state(lowHigh); st != alarm.Latched {
		t.Fatalf("alarm %s, want latched", st)
	}
	res := s.get(link)
	expectPage(t, res, http.StatusOK, "*** high", "latched")
	res = s.post(link, form(s.confirmOf(link), "AB"), nil)
	expectPage(t, res, http.StatusOK, "Acknowledged")
	s.expectAcks(ackCall{lowHigh, "AB", How})
	if st := s.state(lowHigh); st != alarm.Inactive {
		t.Errorf("latched alarm after acknowledgement: %s, want over", st)
	}
}

func TestPostNeedsTheConfirmValue(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	other := s.link(lowMedium) // another message's link for the same event
	for name, f := range map[string]url.Values{
		"missing":                {"by": {"x"}},
		"empty":                  form("", "x"),
		"another link's":         form(s.confirmOf(other), "x"),
		"the token itself":       form(link[strings.LastIndex(link, "/")+1:], "x"),
		"in the query, not form": nil,
	} {
		t.Run(name, func(t *testing.T) {
			target := link
			if f == nil {
				target = link + "?confirm=" + s.confirmOf(link)
				f = url.Values{"by": {"x"}}
			}
			expectPage(t, s.post(target, f, nil), http.StatusForbidden, "Request refused", "confirmation was missing or wrong")
		})
	}
	// Multipart bodies are not parsed: the field is not found.
	req, _ := http.NewRequest(http.MethodPost, link, strings.NewReader("--b\r\nContent-Disposition: form-data; name=\"confirm\"\r\n\r\n"+s.confirmOf(link)+"\r\n--b--\r\n"))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	if res := s.do(req); res.status != http.StatusForbidden {
		t.Errorf("multipart POST: %d, want 403", res.status)
	}
	s.expectAcks()
	// None of that used the link up.
	expectPage(t, s.post(link, form(s.confirmOf(link), "RN"), nil), http.StatusOK, "Acknowledged")
}

func TestPostCrossOriginRefused(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	confirm := s.confirmOf(link) // the worst case: the attacker has it too
	for name, h := range map[string]map[string]string{
		"Sec-Fetch-Site cross-site":             {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		"Sec-Fetch-Site same-site":              {"Sec-Fetch-Site": "same-site", "Origin": "http://other.clinic.lan"},
		"Sec-Fetch-Site cross-site, own Origin": {"Sec-Fetch-Site": "cross-site"},
		"foreign Origin, no Sec-Fetch-Site":     {"Sec-Fetch-Site": "", "Origin": "http://evil.example"},
		"same host, other port":                 {"Sec-Fetch-Site": "", "Origin": strings.Replace(s.srv.URL, "127.0.0.1:", "127.0.0.1:1", 1)},
		"Origin null, no Sec-Fetch-Site":        {"Sec-Fetch-Site": "", "Origin": "null"},
	} {
		t.Run(name, func(t *testing.T) {
			expectPage(t, s.post(link, form(confirm, "attacker"), h), http.StatusForbidden, "Request refused", "did not come from the acknowledge page")
		})
	}
	s.expectAcks()
	if st := s.state(lowMedium); st != alarm.Active {
		t.Errorf("alarm %s after cross-origin POSTs, want active", st)
	}
	if !strings.Contains(s.logs.String(), "cross-origin POST refused") {
		t.Error("cross-origin refusals are not logged")
	}

	// Plain-http LAN: no Sec-Fetch-Site, Origin equal to the host. Allowed.
	res := s.post(link, form(confirm, "RN"), map[string]string{"Sec-Fetch-Site": ""})
	expectPage(t, res, http.StatusOK, "Acknowledged")
}

func TestPostWithoutBrowserHeadersAllowed(t *testing.T) {
	// A non-browser client (curl) sends neither header; CSRF needs a
	// browser, and the token plus the confirm value still gate it.
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	res := s.post(link, form(s.confirmOf(link), "cli"), map[string]string{"Sec-Fetch-Site": "", "Origin": ""})
	expectPage(t, res, http.StatusOK, "Acknowledged")
}

func TestEndedOccurrenceRefused(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	confirm := s.confirmOf(link)
	s.recover()
	if st := s.state(lowMedium); st != alarm.Inactive {
		t.Fatalf("alarm %s, want over", st)
	}
	expectPage(t, s.get(link), http.StatusGone, "Alarm over")
	expectPage(t, s.post(link, form(confirm, "RN"), nil), http.StatusGone, "Alarm over")

	// A new occurrence of the same alarm: the old link stays refused.
	s.raise(88, "spo2-low-medium")
	expectPage(t, s.get(link), http.StatusGone, "Alarm over")
	expectPage(t, s.post(link, form(confirm, "RN"), nil), http.StatusGone, "Alarm over")
	s.expectAcks()
	if st := s.state(lowMedium); st != alarm.Active {
		t.Errorf("new occurrence %s, want active", st)
	}
}

func TestExpiredLinkRefused(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	confirm := s.confirmOf(link)
	s.clock.Advance(DefaultTTL)
	expectPage(t, s.get(link), http.StatusGone, "Link expired")
	expectPage(t, s.post(link, form(confirm, "RN"), nil), http.StatusGone, "Link expired")
	s.expectAcks()
	if !strings.Contains(s.logs.String(), "outcome=expired") {
		t.Error("expired link not logged")
	}
}

func TestInvalidLinksLookAlike(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	tok := link[strings.LastIndex(link, "/")+1:]
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)-1] ^= 1
	forged := s.srv.URL + "/ack/" + base64.RawURLEncoding.EncodeToString(raw)
	malformed := s.srv.URL + "/ack/not-a-token"
	huge := s.srv.URL + "/ack/" + strings.Repeat("A", 8000)
	newline := s.srv.URL + "/ack/" + tok[:40] + "%0A" + tok[40:] // the genuine token, respelled

	var bodies []string
	for _, u := range []string{forged, malformed, huge, newline} {
		res := s.get(u)
		expectPage(t, res, http.StatusNotFound, "Not a valid link")
		bodies = append(bodies, res.body)
		res = s.post(u, form("x", "x"), nil)
		expectPage(t, res, http.StatusNotFound, "Not a valid link")
		bodies = append(bodies, res.body)
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("invalid links differ in what they say:\n%s\n---\n%s", bodies[0], b)
		}
	}
	if strings.Contains(bodies[0], "signature") || strings.Contains(bodies[0], "malformed") {
		t.Error("the invalid-link page tells why")
	}
	// Unroutable paths and methods still carry the headers.
	for _, m := range []string{http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, link, nil)
		res := s.do(req)
		if res.status != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, res.status)
		}
		checkHeaders(t, res.header)
	}
	res := s.get(s.srv.URL + "/ack/")
	if res.status != http.StatusNotFound {
		t.Errorf("/ack/: %d, want 404", res.status)
	}
	checkHeaders(t, res.header)
	s.expectAcks()
}

func TestPostBodyLimited(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	res := s.post(link, form(s.confirmOf(link), strings.Repeat("x", maxFormBytes)), nil)
	expectPage(t, res, http.StatusRequestEntityTooLarge, "Request too large")
	req, _ := http.NewRequest(http.MethodPost, link, strings.NewReader("confirm=%zz"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	expectPage(t, s.do(req), http.StatusBadRequest, "Bad request")
	// A long name within the limit is cut, not refused.
	res = s.post(link, form(s.confirmOf(link), strings.Repeat("é", 100)), nil)
	expectPage(t, res, http.StatusOK, "Acknowledged")
	s.expectAcks(ackCall{lowMedium, strings.Repeat("é", MaxNameRunes), How})
}

func TestAcknowledgeFailureKeepsTheLink(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	confirm := s.confirmOf(link)
	s.setFailAck(errAckStore)
	expectPage(t, s.post(link, form(confirm, "RN"), nil), http.StatusInternalServerError, "Not acknowledged", "Try again")
	s.setFailAck(nil)
	expectPage(t, s.post(link, form(confirm, "RN"), nil), http.StatusOK, "Acknowledged")
	s.expectAcks(ackCall{lowMedium, "RN", How})

	// The engine refusing (the alarm is unknown, or went back to pending)
	// reads as over. A Current that claims an alarm the engine does not
	// know stands in for the alarm changing between the check and the
	// acknowledgement.
	s2 := newSite(t)
	s2.links.current = func(id string) (alarm.Event, bool) {
		return alarm.Event{AlarmID: id, EventID: "e1", State: alarm.Active, Priority: alarm.Medium, Text: "** test"}, true
	}
	ghost := s2.links.URL(alarm.Event{AlarmID: "no-such-rule/" + oximeter, EventID: "e1"})
	expectPage(t, s2.post(ghost, form(s2.confirmOf(ghost), "RN"), nil), http.StatusGone, "Alarm over")
}

func TestConcurrentPostsAcknowledgeOnce(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	link := s.link(lowMedium)
	confirm := s.confirmOf(link)
	const n = 12
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, link, strings.NewReader(form(confirm, "N"+string(rune('a'+i))).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			res, err := s.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			statuses <- res.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for st := range statuses {
		count[st]++
	}
	if count[http.StatusOK] != 1 || count[http.StatusConflict] != n-1 {
		t.Errorf("statuses %v, want one 200 and %d 409", count, n-1)
	}
	if got := s.ackCalls(); len(got) != 1 {
		t.Errorf("Acknowledge called %d times, want once", len(got))
	}
}

func TestEveryOutcomeRenders(t *testing.T) {
	s := newSite(t)
	ev := s.raise(88, "spo2-low-medium")
	ev.Text = `** <script>alert(1)</script> & "quotes"`
	for out := range outcomes {
		for _, show := range []bool{false, true} {
			rec := httptest.NewRecorder()
			d := s.links.pageFor(outcome(out), ev, show)
			d.Form = true
			d.Confirm = "abc"
			s.links.render(rec, outcomes[out].status, d)
			if rec.Code != outcomes[out].status {
				t.Errorf("%s: status %d", outcomes[out].name, rec.Code)
			}
			body := rec.Body.String()
			if !strings.Contains(body, outcomes[out].heading) {
				t.Errorf("%s: heading missing", outcomes[out].name)
			}
			if strings.Contains(body, "<script>") {
				t.Errorf("%s: alarm text not escaped:\n%s", outcomes[out].name, body)
			}
		}
	}
}

func TestStyleMatchesPolicyHash(t *testing.T) {
	s := newSite(t)
	s.raise(88, "spo2-low-medium")
	body := s.get(s.link(lowMedium)).body
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no style element")
	}
	sum := sha256.Sum256([]byte(m[1]))
	hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if !strings.Contains(contentSecurityPolicy, "style-src "+hash) {
		t.Errorf("the served stylesheet's hash %s is not the policy's: %s", hash, contentSecurityPolicy)
	}
	if strings.Contains(body, "<script") {
		t.Error("the page has a script")
	}
}
