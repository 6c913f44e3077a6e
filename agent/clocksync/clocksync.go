// Package clocksync tells whether the system clock is synchronised, the
// way the kernel knows it: an NTP client (chrony, systemd-timesyncd, ntpd)
// disciplining the clock clears the kernel's STA_UNSYNC flag and keeps its
// estimated error small. Readings, alarms and session records carry the
// agent's timestamps, so a clock left to drift makes a session record
// disagree with the clinic's other records; Vigil raises a technical alarm.
package clocksync

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Status is the kernel's view of the clock.
type Status struct {
	Synchronised bool
	// MaxError is the kernel's maximum error estimate of the clock
	// (adjtimex maxerror), meaningful while synchronised.
	MaxError time.Duration
}

// timeError is adjtimex's TIME_ERROR return: the clock is not synchronised
// (man 2 adjtimex).
const timeError = 5

// Read asks the kernel (adjtimex(2) in read-only mode: modes 0).
func Read() (Status, error) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return Status{}, fmt.Errorf("adjtimex: %w", err)
	}
	return Status{
		Synchronised: state != timeError && tx.Status&unix.STA_UNSYNC == 0,
		MaxError:     time.Duration(tx.Maxerror) * time.Microsecond,
	}, nil
}
