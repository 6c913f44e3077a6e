package mqtt

import (
	"fmt"
)

// SessionTopicLevel is the level of the room's session topics
// ({prefix}/{site}/{room}/session, retained, and .../session/cmd). No
// device may be called this (the config refuses it).
const SessionTopicLevel = "session"

// SessionCommand is a command on {prefix}/{site}/{room}/session/cmd:
//
//	{"command":"start","route":"iv","by":"RN Kim"}
//	{"command":"dose","by":"RN Kim"}
//	{"command":"end","by":"RN Kim"}
//
// "by" is required (audited). A clinic reference is refused here: it may
// only be given through the local CLI or API, since a message on the broker
// is seen by every subscriber the broker's ACL allows.
type SessionCommand struct {
	Name  string // "start", "dose" or "end"
	Route string // start: optional (lozenge, im, iv, intranasal)
	By    string
}

func (p *Publisher) sessionCommand(c parsedCommand) error {
	if p.s.OnSessionCommand == nil {
		return fmt.Errorf("session commands are not enabled")
	}
	sc, err := parseSessionCommand(c)
	if err != nil {
		return err
	}
	return p.s.OnSessionCommand(sc)
}

func parseSessionCommand(c parsedCommand) (SessionCommand, error) {
	sc := SessionCommand{Name: c.name}
	if _, ok := c.fields["clinic_ref"]; ok {
		return sc, &commandRejection{reason: `"clinic_ref" is refused over MQTT: give it with "vigil session start --clinic-ref" on the agent's machine`}
	}
	var err error
	if sc.By, err = c.by("session changes"); err != nil {
		return sc, err
	}
	switch c.name {
	case "start":
		if sc.Route, err = c.str("route"); err != nil {
			return sc, err
		}
	case "dose", "end":
	default:
		return sc, &commandRejection{reason: `unknown session command; use start, dose or end`}
	}
	return sc, nil
}
