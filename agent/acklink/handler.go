package acklink

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// Request limits.
const (
	// maxFormBytes bounds a POST body. The form has two fields: the confirm
	// value (43 characters) and a name of at most MaxNameRunes runes, at
	// most 12 bytes each once UTF-8 and percent-encoded.
	maxFormBytes = 2048
	// MaxNameRunes bounds the "name or initials" field: enough for a full
	// name, short enough for an audit line.
	MaxNameRunes = 40
	// UnnamedBy is passed to Acknowledge when the nurse gave no name.
	UnnamedBy = "unnamed"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed page.css
	pageCSS string

	pageTemplate = template.Must(template.New("page").Parse(pageHTML))

	// contentSecurityPolicy allows nothing but the page's own inline
	// stylesheet (by hash: no 'unsafe-inline') and a form posting back to
	// this server. No scripts are needed, none may run; the page may not
	// be framed (clickjacking a one-tap button) or change its base URL.
	contentSecurityPolicy = "default-src 'none'; style-src '" + styleHash(pageCSS) + "'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

func styleHash(css string) string {
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// setSecurityHeaders is applied to every response of the handler, errors
// included.
func setSecurityHeaders(h http.Header) {
	// The page shows live alarm state and carries a one-use form value:
	// never cache it (a back button must ask the server again).
	h.Set("Cache-Control", "no-store")
	// same-origin, not no-referrer: with no-referrer, browsers send
	// "Origin: null" on the form POST, and on a plain-http clinic LAN
	// (where Sec-Fetch-Site is not sent, since the origin is not
	// "potentially trustworthy") CrossOriginProtection then refuses the
	// nurse's own acknowledgement. Measured with Chromium; see
	// TestBrowserPlainHTTPLANName. same-origin still sends nothing, and so
	// never the token, to any other origin; the page loads nothing from
	// elsewhere anyway (the policy above).
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for older browsers
}

// Handler serves the links: GET /ack/{token} shows the confirm page and
// changes nothing (a link previewer or a prefetch must not acknowledge);
// POST /ack/{token} acknowledges once. Mount it at "/ack/" (or both method
// patterns) on the agent's mux.
func (l *Links) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ack/{token}", l.serveConfirm)
	mux.HandleFunc("POST /ack/{token}", l.serveAcknowledge)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		mux.ServeHTTP(w, r)
	})
}

// outcome is what a request to a link comes to; each has one page and one
// status.
type outcome uint8

const (
	outConfirm             outcome = iota // GET of a usable link: the form
	outAcknowledged                       // POST acknowledged
	outLinkUsed                           // this link already acknowledged
	outAlreadyAcknowledged                // someone acknowledged the alarm another way
	outEnded                              // the occurrence is over (or the alarm is unknown)
	outExpired                            // genuine but past its expiry
	outInvalid                            // malformed or forged: nothing more is said
	outCrossOrigin                        // POST from another origin
	outBadConfirm                         // POST without the page's confirm value
	outTooLarge                           // POST body over maxFormBytes
	outBadForm                            // unparsable POST body
	outFailed                             // Acknowledge failed
)

type outcomeText struct {
	name    string // for the log
	status  int
	heading string
	message string
}

var outcomes = [...]outcomeText{
	outConfirm: {"confirm", http.StatusOK, "Acknowledge this alarm?",
		"Press Acknowledge if you are taking care of it."},
	outAcknowledged: {"acknowledged", http.StatusOK, "Acknowledged",
		"Thank you. The alarm stops signalling until its condition clears."},
	outLinkUsed: {"link_used", http.StatusConflict, "Link already used",
		"This link has already acknowledged the alarm. Each link works once."},
	outAlreadyAcknowledged: {"already_acknowledged", http.StatusConflict, "Already acknowledged",
		"Someone has already acknowledged this alarm."},
	outEnded: {"ended", http.StatusGone, "Alarm over",
		"This alarm has ended; there is nothing to acknowledge. Check the room for the present state."},
	outExpired: {"expired", http.StatusGone, "Link expired",
		"This link has expired. Use the link of a newer message, or acknowledge in the room."},
	outInvalid: {"invalid", http.StatusNotFound, "Not a valid link",
		"This is not a valid acknowledge link. Open the link from the alarm message again, or acknowledge in the room."},
	outCrossOrigin: {"cross_origin", http.StatusForbidden, "Request refused",
		"This request did not come from the acknowledge page. Open the alarm link itself and press Acknowledge there."},
	outBadConfirm: {"bad_confirm", http.StatusForbidden, "Request refused",
		"The confirmation was missing or wrong. Open the alarm link again and press Acknowledge there."},
	outTooLarge: {"too_large", http.StatusRequestEntityTooLarge, "Request too large",
		"Open the alarm link again and press Acknowledge."},
	outBadForm: {"bad_form", http.StatusBadRequest, "Bad request",
		"Open the alarm link again and press Acknowledge."},
	outFailed: {"failed", http.StatusInternalServerError, "Not acknowledged",
		"The acknowledgement could not be recorded. Try again, or acknowledge in the room."},
}

// alarmView is the alarm as the page shows it: room, text, priority,
// state and onset only (no patient data exists in an Event).
type alarmView struct {
	Text, Room, Priority, PriorityClass, State, Onset string
}

type pageData struct {
	Heading, Message string
	Alarm            *alarmView
	Form             bool
	Confirm          string
	NameMax          int
	CSS              template.CSS // the embedded stylesheet, byte for byte (its hash is in the CSP)
}

func (l *Links) serveConfirm(w http.ResponseWriter, r *http.Request) {
	tok, err := l.Verify(r.PathValue("token"))
	if err != nil {
		l.refuseToken(w, r, tok, err)
		return
	}
	out, ev, ok := l.standing(tok)
	if out != outConfirm {
		l.logOutcome(r, tok, out)
	} else {
		// Debug: link previewers and prefetches open links too.
		l.logger.Debug("acknowledge link opened", "alarm", tok.AlarmID, "event", tok.EventID)
	}
	data := l.pageFor(out, ev, ok)
	if out == outConfirm {
		data.Form = true
		data.Confirm = l.confirmValue(tok)
	}
	l.render(w, outcomes[out].status, data)
}

func (l *Links) serveAcknowledge(w http.ResponseWriter, r *http.Request) {
	tok, err := l.Verify(r.PathValue("token"))
	if err != nil {
		l.refuseToken(w, r, tok, err)
		return
	}
	if err := l.csrf.Check(r); err != nil {
		l.logger.Warn("acknowledge link: cross-origin POST refused", "alarm", tok.AlarmID, "event", tok.EventID, "remote", r.RemoteAddr)
		l.renderOutcome(w, outCrossOrigin)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		out := outBadForm
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			out = outTooLarge
		}
		l.logOutcome(r, tok, out)
		l.renderOutcome(w, out)
		return
	}
	if !l.confirmMatches(tok, r.PostForm.Get("confirm")) {
		l.logger.Warn("acknowledge link: POST without the page's confirm value refused", "alarm", tok.AlarmID, "event", tok.EventID, "remote", r.RemoteAddr)
		l.renderOutcome(w, outBadConfirm)
		return
	}
	out, ev, ok := l.standing(tok)
	if out == outConfirm && !l.used.reserve(tok.nonce, tok.Expires, l.now()) {
		out = outLinkUsed // a concurrent POST of the same link won
	}
	if out != outConfirm {
		l.logOutcome(r, tok, out)
		l.render(w, outcomes[out].status, l.pageFor(out, ev, ok))
		return
	}

	by := cleanName(r.PostForm.Get("by"))
	if by == "" {
		by = UnnamedBy
	}
	// The occurrence was checked just above, and Acknowledge checks it
	// again atomically: one that ends and a new one that starts in between
	// is refused as ended.
	if err := l.ack(tok.AlarmID, tok.EventID, by, How); err != nil {
		l.used.release(tok.nonce)
		out = outFailed
		if errors.Is(err, alarm.ErrNotAlarming) || errors.Is(err, alarm.ErrUnknownAlarm) || errors.Is(err, alarm.ErrOtherOccurrence) {
			out = outEnded
		}
		l.logger.Warn("acknowledge link: acknowledgement failed", "alarm", tok.AlarmID, "event", tok.EventID, "outcome", outcomes[out].name, "err", err)
		ev, ok = l.current(tok.AlarmID)
		l.render(w, outcomes[out].status, l.pageFor(out, ev, ok && ev.EventID == tok.EventID))
		return
	}
	l.used.commit(tok.nonce)
	l.logger.Info("alarm acknowledged through phone link", "alarm", tok.AlarmID, "event", tok.EventID, "by", by)
	if now, nowOK := l.current(tok.AlarmID); nowOK && now.EventID == tok.EventID {
		ev = now // show the state the acknowledgement led to
	}
	data := l.pageFor(outAcknowledged, ev, true)
	if by != UnnamedBy {
		data.Message = "Thank you, " + by + ". The alarm stops signalling until its condition clears."
	}
	l.render(w, outcomes[outAcknowledged].status, data)
}

// standing says where a genuine, unexpired token stands: outConfirm when
// it may acknowledge, else why not. ev (with ok) is the alarm's present
// event when it is still the token's occurrence.
func (l *Links) standing(tok Token) (out outcome, ev alarm.Event, ok bool) {
	ev, ok = l.current(tok.AlarmID)
	ok = ok && ev.EventID == tok.EventID
	switch {
	case l.used.used(tok.nonce):
		return outLinkUsed, ev, ok
	case !ok:
		return outEnded, ev, false
	case ev.State == alarm.Acknowledged:
		return outAlreadyAcknowledged, ev, ok
	case ev.State == alarm.Active || ev.State == alarm.Latched:
		return outConfirm, ev, ok
	}
	// Resolved or inactive: the occurrence is over.
	return outEnded, ev, false
}

// refuseToken answers a token Verify refused: expired (genuine, so its
// alarm id may be logged) or invalid (nothing in it can be trusted, and
// nothing is said that would help forge one: malformed and badly signed
// tokens get the same page).
func (l *Links) refuseToken(w http.ResponseWriter, r *http.Request, tok Token, err error) {
	if errors.Is(err, ErrExpired) {
		l.logOutcome(r, tok, outExpired)
		l.renderOutcome(w, outExpired)
		return
	}
	// Debug only: scanners and typos are not worth a warning each, and
	// nothing in the token identifies an alarm.
	l.logger.Debug("acknowledge link: invalid token", "method", r.Method, "reason", err, "remote", r.RemoteAddr)
	l.renderOutcome(w, outInvalid)
}

func (l *Links) logOutcome(r *http.Request, tok Token, out outcome) {
	l.logger.Info("acknowledge link", "method", r.Method, "alarm", tok.AlarmID, "event", tok.EventID, "outcome", outcomes[out].name)
}

func (l *Links) pageFor(out outcome, ev alarm.Event, showAlarm bool) pageData {
	t := outcomes[out]
	d := pageData{Heading: t.heading, Message: t.message, NameMax: MaxNameRunes, CSS: template.CSS(pageCSS)}
	if showAlarm {
		d.Alarm = l.viewOf(ev)
	}
	return d
}

func (l *Links) viewOf(ev alarm.Event) *alarmView {
	v := &alarmView{
		Text:          ev.Text,
		Room:          ev.Room,
		Priority:      ev.Priority.String(),
		PriorityClass: ev.Priority.String(),
		State:         string(ev.State),
	}
	if m := ev.Priority.Marker(); m != "" {
		// The marker tells priorities apart without colour (clinical.md 1).
		v.Priority = m + " " + v.Priority
	}
	if !ev.Onset.IsZero() {
		// The agent's local time zone is the clinic's.
		v.Onset = ev.Onset.Local().Format("15:04:05, 2 Jan 2006")
		if ago := l.now().Sub(ev.Onset).Truncate(time.Minute); ago >= time.Minute {
			v.Onset += " (" + strings.TrimSuffix(ago.String(), "0s") + " ago)"
		}
	}
	return v
}

func (l *Links) renderOutcome(w http.ResponseWriter, out outcome) {
	l.render(w, outcomes[out].status, l.pageFor(out, alarm.Event{}, false))
}

func (l *Links) render(w http.ResponseWriter, status int, d pageData) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		// Only a template bug gets here; the tests execute every outcome.
		l.logger.Error("acknowledge link: page template failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// cleanName makes the optional name safe for the audit trail and logs:
// valid UTF-8, no control or format characters (line breaks that would
// forge log lines, bidirectional overrides that would disguise the text),
// spaces collapsed, at most MaxNameRunes runes.
func cleanName(s string) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > MaxNameRunes {
		s = strings.TrimSpace(string([]rune(s)[:MaxNameRunes]))
	}
	return s
}
