package ntfy

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// ntfy priorities, https://docs.ntfy.sh/publish/#message-priority. Sent as
// their numbers, which every ntfy version reads the same.
const (
	priorityUrgent  = "5" // max/urgent: long vibration bursts, pop-over
	priorityHigh    = "4" // high: long vibration burst, pop-over
	priorityDefault = "3" // default: short vibration and sound
	priorityLow     = "2" // low: no sound nor vibration, shown in the drawer
)

// Tags that ntfy shows as emoji (https://docs.ntfy.sh/publish/#tags-emojis,
// shortcodes of https://docs.ntfy.sh/emojis/).
const (
	tagHigh         = "rotating_light"        // 🚨
	tagMedium       = "warning"               // ⚠️
	tagLow          = "information_source"    // ℹ️
	tagResolved     = "white_check_mark"      // ✅
	tagAcknowledged = "ballot_box_with_check" // ☑️
)

// maxMessageBytes is ntfy's default message size limit: a longer body is
// turned into an attachment, which a phone does not show as text.
// https://docs.ntfy.sh/publish/#limitations
const maxMessageBytes = 4096

// maxTitleRunes bounds the title: it is read at a glance on a lock screen,
// and an odd room name must not bloat the header.
const maxTitleRunes = 200

// ackLabel is the action button's label.
const ackLabel = "Acknowledge"

// message is what one event becomes on ntfy.
type message struct {
	title    string
	priority string
	tags     []string
	click    string
	actions  string
	body     string
	// ackOmitted: the event had an AckURL that is not an absolute http(s)
	// URL, so the message goes out without it.
	ackOmitted bool
}

// buildMessage turns ev into ntfy's fields. It never fails: a malformed
// event still produces a readable, loud message, because a dropped alarm is
// worse than an odd-looking one.
func buildMessage(ev alarm.Event, extraTags []string) message {
	prio := ev.Priority
	if prio.Marker() == "" {
		// An event without a valid priority is sent as high: a malformed
		// alarm must never reach people quieter than a real one.
		prio = alarm.High
	}
	marker := prio.Marker()
	headline := headline(ev)

	var m message
	var status, statusTag string
	switch {
	case ev.Phase == alarm.PhaseEnd || ev.State == alarm.Resolved:
		// The alarm is over: a quiet note that closes the loop, in the
		// drawer without sound, nothing left to acknowledge.
		status, statusTag, m.priority = "Resolved: ", tagResolved, priorityLow
	case ev.State == alarm.Acknowledged:
		// Someone took it; signalling stops until the condition clears
		// (clinical.md 1), so the note is quiet as well.
		status, statusTag, m.priority = "Acknowledged: ", tagAcknowledged, priorityLow
	default:
		switch prio {
		case alarm.High:
			statusTag, m.priority = tagHigh, priorityUrgent
		case alarm.Medium:
			statusTag, m.priority = tagMedium, priorityHigh
		default:
			statusTag, m.priority = tagLow, priorityDefault
		}
		m.click, m.actions, m.ackOmitted = ackFields(ev.AckURL)
	}

	title := marker + " " + status + headline
	if room := notify.OneLine(ev.Room, maxTitleRunes); room != "" {
		title += " — " + room
	}
	m.title = notify.OneLine(title, maxTitleRunes)

	m.tags = append(m.tags, statusTag)
	if kind := tagSafe(string(ev.Kind)); kind != "" {
		m.tags = append(m.tags, kind)
	}
	m.tags = append(m.tags, extraTags...)

	m.body = body(ev, marker, status+headline)
	return m
}

// setHeaders writes m as ntfy's publish headers
// (https://docs.ntfy.sh/publish/). Values that are not plain ASCII are sent
// as RFC 2047 encoded-words, which ntfy decodes for every header: raw UTF-8
// in a header is mangled by some proxies. The priority goes in X-Priority
// rather than its alias Priority, because proxies such as Cloudflare set
// Priority to RFC 9218's "u=..." and ntfy then ignores that header.
func (m message) setHeaders(h http.Header) {
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Title", encodeHeader(m.title))
	h.Set("X-Priority", m.priority)
	h.Set("Tags", encodeHeader(strings.Join(m.tags, ",")))
	if m.click != "" {
		h.Set("Click", m.click)
	}
	if m.actions != "" {
		h.Set("Actions", m.actions)
	}
}

// encodeHeader returns s unchanged when it is printable ASCII, else as
// RFC 2047 encoded-words (https://docs.ntfy.sh/publish/#message-title).
func encodeHeader(s string) string {
	return mime.QEncoding.Encode("utf-8", s)
}

// ackFields gives the Click target and the Actions header for an acknowledge
// link. The simple action syntax (https://docs.ntfy.sh/publish/#action-buttons)
// separates fields with commas and actions with semicolons, so a link that
// holds either, or a quote, goes in the JSON form ntfy also accepts there.
func ackFields(ackURL string) (click, actions string, omitted bool) {
	if ackURL == "" {
		return "", "", false
	}
	u, err := url.Parse(ackURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !isVisibleASCII(ackURL) {
		return "", "", true
	}
	if !strings.ContainsAny(ackURL, `,;"'`) {
		return ackURL, "view, " + ackLabel + ", " + ackURL + ", clear=true", false
	}
	js, err := json.Marshal([]viewAction{{Action: "view", Label: ackLabel, URL: ackURL, Clear: true}})
	if err != nil {
		return "", "", true
	}
	return ackURL, string(js), false
}

// viewAction is ntfy's JSON form of a view action button.
type viewAction struct {
	Action string `json:"action"`
	Label  string `json:"label"`
	URL    string `json:"url"`
	Clear  bool   `json:"clear"`
}

// metricLabels are the names people read for catalogue metrics
// (drivers/metric.go); an unlisted metric shows its catalogue name.
var metricLabels = map[string]string{
	"spo2":               "SpO2",
	"pulse_rate":         "Pulse",
	"perfusion_index":    "Perfusion index",
	"nibp_systolic":      "Systolic BP",
	"nibp_diastolic":     "Diastolic BP",
	"nibp_mean":          "Mean BP",
	"nibp_pulse_rate":    "Pulse (NIBP)",
	"respiration_rate":   "Respiration rate",
	"nibp_cuff_pressure": "Cuff pressure",
}

// conditionWords say a physiological condition the way staff do: "SpO2
// low", not "spo2 below".
var conditionWords = map[string]string{
	"below":              "low",
	"above":              "high",
	"rise_over_baseline": "rise over baseline",
}

// headline names the alarm in a few words: "SpO2 low", "Sensor off",
// "Pulse sensor off". It holds no value, so the title stays the same for
// the whole alarm and phones group it.
func headline(ev alarm.Event) string {
	var parts []string
	if ev.Metric != "" {
		label, ok := metricLabels[ev.Metric]
		if !ok {
			label = strings.ReplaceAll(ev.Metric, "_", " ")
		}
		parts = append(parts, label)
	}
	if ev.Condition != "" {
		word, ok := conditionWords[ev.Condition]
		if !ok {
			word = strings.ReplaceAll(ev.Condition, "_", " ")
		}
		parts = append(parts, word)
	}
	if len(parts) == 0 {
		kind := string(ev.Kind)
		if kind == "" {
			kind = "unknown"
		}
		parts = append(parts, kind+" alarm")
	}
	return upperFirst(notify.OneLine(strings.Join(parts, " "), maxTitleRunes))
}

// body is the event's one-line text, starting with the priority marker
// (clinical.md 1). An event without text gets one composed from its fields,
// so the message is never blank.
func body(ev alarm.Event, marker, headline string) string {
	text := notify.OneLine(ev.Text, maxMessageBytes)
	if text == "" {
		text = composeText(ev, headline)
	}
	if !strings.HasPrefix(text, marker) {
		text = marker + " " + text
	}
	return truncateBytes(text, maxMessageBytes)
}

// composeText writes "SpO2 low: 84 % (limit 85 %), room-1, device
// oximeter-1" from the structured fields: value, unit, limit, room and
// device only, never anything about the patient.
func composeText(ev alarm.Event, headline string) string {
	var b strings.Builder
	b.WriteString(headline)
	if ev.Value != nil {
		b.WriteString(": " + withUnit(*ev.Value, ev.Unit))
	}
	if ev.Limit != nil {
		b.WriteString(" (limit " + withUnit(*ev.Limit, ev.Unit) + ")")
	}
	if ev.Room != "" {
		b.WriteString(", " + ev.Room)
	}
	if ev.Device != "" {
		b.WriteString(", device " + ev.Device)
	}
	return notify.OneLine(b.String(), maxMessageBytes)
}

func withUnit(v float64, unit string) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if unit != "" {
		s += " " + unit
	}
	return s
}

// tagSafe makes s usable as one tag: no commas, no control characters.
func tagSafe(s string) string {
	return strings.ReplaceAll(notify.OneLine(s, 64), ",", " ")
}

func upperFirst(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if size == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[size:]
}

// truncateBytes cuts s to at most n bytes on a rune boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
