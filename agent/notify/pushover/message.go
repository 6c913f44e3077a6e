package pushover

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// compose builds the /1/messages.json form for ev
// (https://pushover.net/api#messages). The text carries room, device,
// metric, value, unit, limit, priority and times only: never a patient
// identifier, and not the session id either (project privacy rule).
func (n *Notifier) compose(ev alarm.Event) url.Values {
	priority := priorityFor(ev)
	form := url.Values{}
	form.Set("token", n.token)
	form.Set("user", n.userKey)
	form.Set("title", truncateRunes(title(ev), MaxTitleRunes))
	form.Set("message", truncateRunes(body(ev), MaxMessageRunes))
	form.Set("priority", strconv.Itoa(priority))
	sent := ev.Sent
	if sent.IsZero() {
		sent = n.now()
	}
	// The event's own time, not Pushover's arrival time, so a delayed
	// delivery shows when the alarm really changed (clinical.md 1: stamp times).
	form.Set("timestamp", strconv.FormatInt(sent.Unix(), 10))
	if priority == priorityEmergency {
		form.Set("retry", strconv.FormatInt(int64(n.retry/time.Second), 10))
		form.Set("expire", strconv.FormatInt(int64(n.expire/time.Second), 10))
	}
	if ev.AckURL != "" {
		// A cut URL would be a broken link; without the link the message
		// still says everything else. The URL is signed: never logged.
		if utf8.RuneCountInString(ev.AckURL) <= MaxURLRunes {
			form.Set("url", ev.AckURL)
			form.Set("url_title", ackURLTitle)
		} else {
			n.logger.Warn("acknowledge link longer than Pushover allows, left out",
				"alarm_id", ev.AlarmID, "event_id", ev.EventID, "max_runes", MaxURLRunes)
		}
	}
	if n.sound != "" {
		form.Set("sound", n.sound)
	}
	if n.device != "" {
		form.Set("device", n.device)
	}
	return form
}

// title starts with the priority marker (clinical.md 1: priority must be
// readable without colour or sound), then what happened to the alarm when
// it is no longer active, then the event's one-line text.
func title(ev alarm.Event) string {
	marker := ev.Priority.Marker()
	if marker == "" {
		marker = alarm.High.Marker() // unknown priority is sent as high; say so
	}
	text := strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(ev.Text), "*"))
	if text == "" {
		text = strings.TrimSpace(ev.Metric + " " + ev.Condition)
	}
	if text == "" {
		text = string(ev.Kind) + " alarm"
	}
	switch {
	case ev.Phase == alarm.PhaseEnd || ev.State == alarm.Resolved:
		text = "RESOLVED: " + text
	case ev.State == alarm.Acknowledged:
		text = "ACKNOWLEDGED: " + text
	}
	return marker + " " + text
}

// body lists the facts a nurse needs to act, one per line.
func body(ev alarm.Event) string {
	var lines []string
	if ev.Value != nil || ev.Limit != nil {
		var b strings.Builder
		if ev.Metric != "" {
			b.WriteString(ev.Metric + ": ")
		}
		if ev.Value != nil {
			b.WriteString(quantity(*ev.Value, ev.Unit))
		}
		if ev.Limit != nil {
			if ev.Value != nil {
				b.WriteString(" ")
			}
			b.WriteString("(limit " + quantity(*ev.Limit, ev.Unit))
			if ev.Condition != "" {
				b.WriteString(", " + ev.Condition)
			}
			b.WriteString(")")
		}
		lines = append(lines, b.String())
	} else if ev.Condition != "" {
		lines = append(lines, "Condition: "+ev.Condition)
	}
	if ev.Room != "" || ev.Site != "" {
		place := "Room: " + orUnknown(ev.Room)
		if ev.Site != "" {
			place += " (site " + ev.Site + ")"
		}
		lines = append(lines, place)
	}
	if ev.Device != "" {
		lines = append(lines, "Device: "+ev.Device)
	}
	lines = append(lines, "Priority: "+ev.Priority.String()+", kind: "+orUnknown(string(ev.Kind))+", state: "+orUnknown(string(ev.State)))
	if !ev.Onset.IsZero() {
		lines = append(lines, "Onset: "+ev.Onset.Format(timeLayout))
	}
	switch {
	case ev.Phase == alarm.PhaseEnd || ev.State == alarm.Resolved:
		lines = append(lines, "Resolved: "+stamp(ev.Sent))
	case ev.State == alarm.Acknowledged:
		lines = append(lines, "Acknowledged: "+stamp(ev.Sent))
	}
	return strings.Join(lines, "\n")
}

// timeLayout shows the agent's local time with its zone, so a phone in
// another zone (or with a wrong clock) still reads the right moment.
const timeLayout = "2006-01-02 15:04:05 MST"

func stamp(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.Format(timeLayout)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// quantity formats a value with its UCUM unit. Two decimals are more than
// any bedside vital sign carries; NaN and infinities print as such rather
// than failing.
func quantity(v float64, unit string) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		s = strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

// truncateRunes cuts s to at most max runes, marking the cut with an
// ellipsis so a reader knows text is missing. Invalid UTF-8 (which Pushover
// could refuse, losing the alarm) is replaced first.
func truncateRunes(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)
	return string(runes[:max-1]) + "…"
}
