package email

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// maxSubjectRunes bounds the subject before encoding: it is read at a
// glance in a phone's mail list, and an odd room name or text must not
// bloat it. Far below RFC 5322's 998-octet line limit (section 2.1.1) even
// once Q-encoded and folded.
const maxSubjectRunes = 200

// maxFieldRunes bounds one value in the body (room, device, text): a
// malformed event must still give a readable mail.
const maxFieldRunes = 500

// foldWidth is where header lines are folded: RFC 5322 section 2.1.1 asks
// for at most 78 characters per line.
const foldWidth = 78

// messageParams is what a mail needs besides the event.
type messageParams struct {
	From *mail.Address
	To   []*mail.Address
	// Date is the Date header: when this attempt hands the mail to the
	// server (RFC 5322 section 3.6.1, the origination date).
	Date time.Time
	// Local is the zone the body shows times in besides UTC: the clinic's.
	Local *time.Location
	// Mailer is the X-Mailer value, vigil/<version>.
	Mailer string
}

// message is one alarm event as a mail.
type message struct {
	// Raw is the whole RFC 5322 message, CRLF line ends, 7-bit clean.
	Raw []byte
	// MessageID is the Message-ID header, angle brackets included.
	MessageID string
	// AckOmitted: the event had an AckURL that is not an absolute http(s)
	// URL, so the mail goes out without it.
	AckOmitted bool
}

// buildMessage writes ev as a mail. It is a pure function of its inputs
// and never fails: a malformed event still gives a readable, loud mail,
// because a dropped alarm is worse than an odd-looking one. Every header
// value is flattened to one line before it is written (no CR or LF can
// come from the event), so the event cannot inject headers.
func buildMessage(ev alarm.Event, p messageParams) message {
	prio := ev.Priority
	if prio.Marker() == "" {
		// An event without a valid priority is sent as high: a malformed
		// alarm must never reach people quieter than a real one.
		prio = alarm.High
	}
	over := ev.Phase == alarm.PhaseEnd || ev.State == alarm.Resolved
	quiet := over || ev.State == alarm.Acknowledged

	domain := addressDomain(p.From)
	threadID := startMessageID(ev, domain)
	msgID := threadID
	var inReplyTo string
	if ev.Phase != alarm.PhaseStart {
		// Updates and the end answer the start's mail, so mail apps show
		// one thread per alarm occurrence (RFC 5322 section 3.6.4). An
		// event with an unknown phase is threaded as a follow-up too: it
		// must not take the start's Message-ID, which a mail app would
		// drop as a duplicate of the start.
		msgID = followUpMessageID(ev, domain)
		inReplyTo = threadID
	}

	ack, ackOmitted := ackLink(ev.AckURL)
	if quiet {
		// Nothing left to acknowledge: over, or someone took it.
		ack = ""
	}

	var h bytes.Buffer
	writeHeader(&h, "Date", p.Date.Format(time.RFC1123Z))
	writeHeader(&h, "From", p.From.String())
	writeHeader(&h, "To", joinAddresses(p.To))
	writeHeader(&h, "Subject", encodeWords(subject(ev, prio, over)))
	writeHeader(&h, "Message-ID", msgID)
	if inReplyTo != "" {
		writeHeader(&h, "In-Reply-To", inReplyTo)
		writeHeader(&h, "References", inReplyTo)
	}
	writeHeader(&h, "MIME-Version", "1.0")
	writeHeader(&h, "Content-Type", "text/plain; charset=utf-8")
	writeHeader(&h, "Content-Transfer-Encoding", "quoted-printable")
	if prio == alarm.High && !quiet {
		// Outlook and other clients that read these show the mail as
		// high importance: X-Priority is the de facto header (1 is the
		// highest), Importance the one registered by RFC 4021.
		writeHeader(&h, "X-Priority", "1")
		writeHeader(&h, "Importance", "high")
	}
	// RFC 3834 section 5: an automatic message, so vacation responders
	// and autoreplies do not answer it.
	writeHeader(&h, "Auto-Submitted", "auto-generated")
	if p.Mailer != "" {
		writeHeader(&h, "X-Mailer", p.Mailer)
	}
	h.WriteString("\r\n")

	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write([]byte(body(ev, prio, over, ack, p.Local)))
	_ = w.Close()
	h.Write(qp.Bytes())
	return message{Raw: h.Bytes(), MessageID: msgID, AckOmitted: ackOmitted}
}

// subject is the priority marker and the alarm's one-line text (clinical.md
// 1: priority readable without colour or sound). The end of an alarm says
// "Resolved:" right after the marker, so the mail list shows it at a
// glance.
func subject(ev alarm.Event, prio alarm.Priority, over bool) string {
	marker := prio.Marker()
	text := notify.OneLine(ev.Text, maxSubjectRunes)
	if text == "" {
		text = composeText(ev)
	}
	// The text's own marker is replaced by the event's: Priority is
	// authoritative, and one subject must not show two markers.
	if rest := strings.TrimLeft(text, "*"); len(rest) < len(text) && len(text)-len(rest) <= 3 && strings.HasPrefix(rest, " ") {
		text = strings.TrimSpace(rest)
	}
	if over {
		text = "Resolved: " + text
	}
	return notify.OneLine(marker+" "+text, maxSubjectRunes)
}

// composeText writes "spo2 84 % (limit 85 %), oximeter-1, room-1" from the
// structured fields, for an event that came without text: value, unit,
// limit, device and room only, never anything about the patient.
func composeText(ev alarm.Event) string {
	var b strings.Builder
	switch {
	case ev.Metric != "":
		b.WriteString(ev.Metric)
	case ev.Condition != "":
		b.WriteString(ev.Condition)
	default:
		kind := string(ev.Kind)
		if kind == "" {
			kind = "unknown"
		}
		b.WriteString(kind + " alarm")
	}
	if ev.Value != nil {
		b.WriteString(" " + withUnit(*ev.Value, ev.Unit))
	}
	if ev.Limit != nil {
		b.WriteString(" (limit " + withUnit(*ev.Limit, ev.Unit) + ")")
	}
	if ev.Device != "" {
		b.WriteString(", " + ev.Device)
	}
	if ev.Room != "" {
		b.WriteString(", room " + ev.Room)
	}
	return notify.OneLine(b.String(), maxSubjectRunes)
}

// body is the mail's text: the alarm's line, then one labelled line per
// field, the acknowledge link, and for the end a resolved line first. It
// names the room and device, never the patient.
func body(ev alarm.Event, prio alarm.Priority, over bool, ack string, local *time.Location) string {
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	field := func(label, value string) {
		if value != "" {
			line(label + ": " + value)
		}
	}
	if over {
		line("RESOLVED: this alarm is over; nothing to acknowledge.")
		line("")
	}
	line(subject(ev, prio, false))
	line("")
	field("Priority", prio.Marker()+" "+prio.String())
	field("State", oneLine(string(ev.State)))
	field("Kind", oneLine(string(ev.Kind)))
	field("Room", oneLine(ev.Room))
	field("Site", oneLine(ev.Site))
	field("Device", oneLine(ev.Device))
	field("Metric", oneLine(ev.Metric))
	field("Condition", oneLine(ev.Condition))
	unit := oneLine(ev.Unit)
	if ev.Value != nil {
		field("Value", withUnit(*ev.Value, unit))
	}
	if ev.Limit != nil {
		field("Limit", withUnit(*ev.Limit, unit))
	}
	field("Onset", timeText(ev.Onset, local))
	field("Sent", timeText(ev.Sent, local))
	field("Alarm", oneLine(ev.AlarmID))
	field("Event", oneLine(ev.EventID))
	if ack != "" {
		line("")
		line("Acknowledge: " + ack)
	}
	line("")
	line("Email is a secondary alarm path: the bedside monitor stays primary.")
	return b.String()
}

func oneLine(s string) string { return notify.OneLine(s, maxFieldRunes) }

// withUnit writes a value for people. NaN and infinities, which a broken
// reading could carry, are named rather than printed as Go's "NaN".
func withUnit(v float64, unit string) string {
	var s string
	switch {
	case math.IsNaN(v), math.IsInf(v, 0):
		s = "not a number (" + strconv.FormatFloat(v, 'f', -1, 64) + ")"
	default:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	}
	if unit = notify.OneLine(unit, 32); unit != "" {
		s += " " + unit
	}
	return s
}

// timeText is "2026-03-01T10:00:00Z (local 2026-03-01 11:00:00 CET)": UTC
// for the record, the clinic's local time for people.
func timeText(t time.Time, local *time.Location) string {
	if t.IsZero() {
		return ""
	}
	if local == nil {
		local = time.Local
	}
	return t.UTC().Format(time.RFC3339) + " (local " + t.In(local).Format("2006-01-02 15:04:05 MST") + ")"
}

// ackLink gives the acknowledge link when it is an absolute http(s) URL of
// printable ASCII; anything else is left out rather than shown as a link
// that does not work.
func ackLink(raw string) (link string, omitted bool) {
	if raw == "" {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !isVisibleASCII(raw) {
		return "", true
	}
	return raw, false
}

// threadKey is what identifies the occurrence. An event without an event
// id (malformed) falls back to its alarm and onset, so two occurrences do
// not share one thread.
func threadKey(ev alarm.Event) string {
	if ev.EventID != "" {
		return "event\x00" + ev.EventID
	}
	return "alarm\x00" + ev.AlarmID + "\x00" + ev.Onset.UTC().Format(time.RFC3339Nano)
}

// startMessageID is the Message-ID of an occurrence's first mail, derived
// from the event id so that later phases can refer to it without the
// notifier keeping state. The id is hashed: an event id may hold characters
// a msg-id cannot (RFC 5322 section 3.6.4, dot-atom-text).
func startMessageID(ev alarm.Event, domain string) string {
	return "<vigil." + digest(threadKey(ev)) + "@" + domain + ">"
}

// followUpMessageID is the Message-ID of an update or end. It is derived
// from the event's phase, time, state, priority and text, so a retry of the
// same event carries the same id (mail apps then show a duplicate once)
// while every distinct event gets its own.
func followUpMessageID(ev alarm.Event, domain string) string {
	key := strings.Join([]string{threadKey(ev), string(ev.Phase), ev.Sent.UTC().Format(time.RFC3339Nano),
		string(ev.State), ev.Priority.String(), ev.Text}, "\x00")
	phase := "update"
	if ev.Phase == alarm.PhaseEnd {
		phase = "end"
	}
	return "<vigil." + digest(threadKey(ev)) + "." + phase + "." + digest(key) + "@" + domain + ">"
}

// digest is 128 bits of SHA-256 in hex: unique enough for message ids.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// addressDomain is the domain of the From address, for message ids. New
// accepts only addresses with a plain domain, so it is safe in a msg-id.
func addressDomain(a *mail.Address) string {
	if a == nil {
		return "localhost"
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at < 0 || at == len(a.Address)-1 {
		return "localhost"
	}
	return strings.ToLower(a.Address[at+1:])
}

func joinAddresses(list []*mail.Address) string {
	parts := make([]string, len(list))
	for i, a := range list {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}

// encodeWords returns s as it is when it is printable ASCII, else as RFC
// 2047 Q encoded-words. Text that looks like an encoded-word ("=?") is
// broken up first, so the event's text cannot make a mail app decode
// something it did not say.
func encodeWords(s string) string {
	s = strings.ReplaceAll(s, "=?", "= ?")
	return mime.QEncoding.Encode("utf-8", s)
}

// writeHeader writes one header field, folded at spaces to foldWidth where
// it can be (RFC 5322 section 2.2.3). CR and LF in the value become spaces
// first: no value, whatever its source, can start a header of its own.
func writeHeader(b *bytes.Buffer, name, value string) {
	value = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, value)
	b.WriteString(name + ":")
	lineLen := len(name) + 1
	for _, word := range strings.Split(value, " ") {
		// A fold may come right after the colon too: an encoded-word of 75
		// characters (RFC 2047 section 2) does not fit behind "Subject:".
		if lineLen > 0 && lineLen+1+len(word) > foldWidth {
			b.WriteString("\r\n")
			lineLen = 0
		}
		b.WriteString(" " + word)
		lineLen += 1 + len(word)
	}
	b.WriteString("\r\n")
}

func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
