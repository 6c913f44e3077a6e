package mqtt

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// AlarmsTopicLevel is the level of the room's alarm topics
// ({prefix}/{site}/{room}/alarms, .../alarms/active, .../alarms/cmd). No
// device may be called this (the config refuses it), so the command topic
// .../alarms/cmd is the room's alarm commands, never a device's.
const AlarmsTopicLevel = "alarms"

// maxByLen bounds "by": a staff name or initials, not a free text field.
const maxByLen = 64

// AlarmCommand is a command on {prefix}/{site}/{room}/alarms/cmd:
//
//	{"command":"ack","alarm":"spo2-low-medium/oximeter-1","by":"RN Kim","id":"7"}
//	{"command":"pause","for":"90s","by":"RN Kim"}
//	{"command":"resume","by":"RN Kim"}
//
// "by" (who, at most 64 characters) is required: every acknowledgement and
// pause goes to the audit log with a name. "for" is a Go duration; omitted,
// the agent's default pause applies, and the agent bounds it by its
// alarms.pause_max. A pause queued by the broker while the agent was away
// still ends at most pause_max after it arrives, and a new or
// higher-priority alarm notifies during it.
type AlarmCommand struct {
	Name  string // "ack", "pause" or "resume"
	Alarm string // ack: the alarm id
	By    string
	For   time.Duration // pause: 0 means the default
}

// alarmCommand checks an alarm command's arguments and hands it to
// OnAlarmCommand.
func (p *Publisher) alarmCommand(c parsedCommand) error {
	if p.s.OnAlarmCommand == nil {
		return fmt.Errorf("alarm commands are not enabled")
	}
	ac, err := parseAlarmCommand(c)
	if err != nil {
		return err
	}
	return p.s.OnAlarmCommand(ac)
}

// str is the command's string argument key ("" when absent or null).
func (c parsedCommand) str(key string) (string, error) {
	raw, ok := c.fields[key]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", &commandRejection{reason: fmt.Sprintf("%q is not a string", key)}
	}
	return s, nil
}

// by is the command's required "by": who, for the audit log.
func (c parsedCommand) by(what string) (string, error) {
	by, err := c.str("by")
	switch {
	case err != nil:
		return "", err
	case by == "":
		return "", &commandRejection{reason: `"by" is required: ` + what + ` are audited with who`}
	case utf8.RuneCountInString(by) > maxByLen || !utf8.ValidString(by):
		return "", &commandRejection{reason: `"by" is longer than 64 characters`}
	}
	return by, nil
}

func parseAlarmCommand(c parsedCommand) (AlarmCommand, error) {
	ac := AlarmCommand{Name: c.name}
	str := c.str
	var err error
	if ac.By, err = c.by("acknowledgements and pauses"); err != nil {
		return ac, err
	}
	switch c.name {
	case "ack":
		if ac.Alarm, err = str("alarm"); err != nil {
			return ac, err
		}
		if ac.Alarm == "" {
			return ac, &commandRejection{reason: `"alarm" is required for ack`}
		}
	case "pause":
		s, err := str("for")
		if err != nil {
			return ac, err
		}
		if s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return ac, &commandRejection{reason: `"for" is not a positive duration such as "90s" or "2m"`}
			}
			ac.For = d
		}
	case "resume":
	default:
		return ac, &commandRejection{reason: `unknown alarm command; use ack, pause or resume`}
	}
	return ac, nil
}
