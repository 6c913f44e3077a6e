// Package sdnotify tells systemd how the agent is doing, over the sd_notify
// protocol (github.com/coreos/go-systemd/v22/daemon): READY=1 once the agent
// serves, STOPPING=1 when it begins a clean stop, STATUS= for `systemctl
// status`, and WATCHDOG=1 pings that keep coming only while the agent makes
// progress, so that systemd restarts an agent that is running but wedged
// (configs/systemd/vigil.service: Type=notify, WatchdogSec=).
//
// Outside systemd (no NOTIFY_SOCKET: a terminal, `vigil demo`, tests) every
// call does nothing and reports (false, nil).
package sdnotify

import (
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready tells systemd that start-up is finished: with Type=notify the unit
// counts as started, and units ordered after it start, only now. sent is
// false without error when the process does not run under systemd.
func Ready() (sent bool, err error) {
	return notify(daemon.SdNotifyReady)
}

// Stopping tells systemd that a clean stop has begun, so the time the stop
// takes (closing devices, publishing the offline status) is not mistaken for
// a hang.
func Stopping() (sent bool, err error) {
	return notify(daemon.SdNotifyStopping)
}

// Status sets the one-line text `systemctl status vigil` shows. Line breaks
// become spaces: a newline would start another assignment in the datagram,
// and a status text must never be able to say READY=1 or WATCHDOG=1.
func Status(text string) (sent bool, err error) {
	return notify("STATUS=" + oneLine(text))
}

// notify sends one datagram. NOTIFY_SOCKET stays set (unsetEnvironment
// false): the agent notifies many times over its life.
func notify(state string) (bool, error) {
	return daemon.SdNotify(false, state)
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
