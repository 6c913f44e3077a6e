// Package doctor checks the whole chain of an installed Vigil on its
// machine: the config, the devices and their permissions for the service
// user, the MQTT broker (with TLS and the credentials), the HTTP listener,
// every notification channel (reached without sending anything), the
// system clock, and the disk under the store. Each check answers OK, a
// warning or a failure, with a one-line finding and, for a failure, what to
// do about it. `vigil doctor` prints them as a checklist.
//
// The checks only look: no message is published, no notification sent, no
// serial port opened (a running agent holds its ports exclusively), and the
// broker is connected to under a client id of the doctor's own so the
// running agent keeps its session.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-monitor/vigil/agent/config"
)

// Status is a check's verdict.
type Status int

const (
	// OK: this link of the chain works.
	OK Status = iota
	// Warn: it works, or is not needed right now, but deserves a look (the
	// agent is not running, the clock is not synchronised, the disk is
	// filling).
	Warn
	// Fail: this link is broken; the Fix says how to mend it.
	Fail
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warning"
	case Fail:
		return "failure"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is one check's outcome.
type Result struct {
	// Name says what was checked: "config", "device oximeter-1", "broker",
	// "http", "channel nurses-ntfy", "clock", "store disk".
	Name   string
	Status Status
	// Finding is one line saying what was found.
	Finding string
	// Details are further lines under the finding, e.g. every problem of an
	// invalid config.
	Details []string
	// Fix says what to do; set for every failure and for most warnings.
	Fix string
}

// Check is one item of the checklist. Run must return once ctx ends.
type Check struct {
	Name string
	Run  func(ctx context.Context) Result
}

// DefaultTimeout bounds each check when Options.Timeout is zero: long
// enough for a TLS handshake to a broker across the clinic network, short
// enough that a checklist with every link down finishes within seconds
// (the checks run side by side).
const DefaultTimeout = 5 * time.Second

// DefaultServiceUser is the user the systemd unit runs the agent as
// (User=vigil in the systemd unit).
const DefaultServiceUser = "vigil"

// Options tune the checks.
type Options struct {
	// Timeout bounds each check; 0 means DefaultTimeout.
	Timeout time.Duration
	// ServiceUser is the user the agent runs as, whose access to the
	// devices and the store is checked; "" means DefaultServiceUser.
	ServiceUser string
	// SupplementaryGroups are the groups the service gets besides its
	// user's own (the unit's SupplementaryGroups=); nil means
	// DefaultSupplementaryGroups.
	SupplementaryGroups []string
}

// DefaultSupplementaryGroups is what the systemd unit adds to the service
// user: dialout, the group udev gives serial devices on Debian.
var DefaultSupplementaryGroups = []string{"dialout"}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ServiceUser == "" {
		o.ServiceUser = DefaultServiceUser
	}
	if o.SupplementaryGroups == nil {
		o.SupplementaryGroups = DefaultSupplementaryGroups
	}
	return o
}

// Diagnose loads the config at path and runs every check. When the config
// cannot be loaded the result is its problems and the checks that need no
// config (the clock).
func Diagnose(ctx context.Context, path string, o Options) []Result {
	o = o.withDefaults()
	cfg, cfgResult := CheckConfig(path)
	checks := []Check{{Name: cfgResult.Name, Run: func(context.Context) Result { return cfgResult }}}
	if cfg != nil {
		checks = append(checks, Checks(cfg, o)...)
	} else {
		checks = append(checks, ClockCheck())
	}
	return RunChecks(ctx, checks, o.Timeout)
}

// Checks is the checklist of a loaded config, config check aside: each
// device, the broker, HTTP, each notification channel, the clock, and the
// store's disk.
func Checks(cfg *config.Config, o Options) []Check {
	o = o.withDefaults()
	var checks []Check
	for i := range cfg.Devices {
		checks = append(checks, DeviceCheck(&cfg.Devices[i], i, o))
	}
	checks = append(checks, BrokerChecks(cfg, o)...)
	checks = append(checks, HTTPCheck(cfg.HTTP.Listen))
	for i := range cfg.Notify.Channels {
		checks = append(checks, ChannelCheck(&cfg.Notify.Channels[i]))
	}
	checks = append(checks, ClockCheck(), DiskCheck(cfg.Store.Path, o))
	return checks
}

// RunChecks runs the checks side by side, each bounded by timeout, and
// returns their results in the order given. A check still running at its
// deadline has been told through its context; one that panics is reported
// as failed rather than taking the checklist down.
func RunChecks(ctx context.Context, checks []Check, timeout time.Duration) []Result {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			results[i] = runOne(ctx, c, timeout)
		})
	}
	wg.Wait()
	return results
}

func runOne(ctx context.Context, c Check, timeout time.Duration) (r Result) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			r = Result{Name: c.Name, Status: Fail, Finding: fmt.Sprintf("the check itself failed: %v", p),
				Fix: "report this as a bug in vigil doctor, with the output above"}
		}
	}()
	r = c.Run(ctx)
	if r.Name == "" {
		r.Name = c.Name
	}
	if r.Status != OK && r.Fix == "" && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.Fix = fmt.Sprintf("no answer within %s: check the network path and that the other end is up", timeout)
	}
	return r
}

// Summary counts the results of each status.
func Summary(results []Result) (ok, warnings, failures int) {
	for _, r := range results {
		switch r.Status {
		case OK:
			ok++
		case Warn:
			warnings++
		default:
			failures++
		}
	}
	return ok, warnings, failures
}

func okf(name, format string, args ...any) Result {
	return Result{Name: name, Status: OK, Finding: fmt.Sprintf(format, args...)}
}

func warnf(name, fix, format string, args ...any) Result {
	return Result{Name: name, Status: Warn, Finding: fmt.Sprintf(format, args...), Fix: fix}
}

func failf(name, fix, format string, args ...any) Result {
	return Result{Name: name, Status: Fail, Finding: fmt.Sprintf(format, args...), Fix: fix}
}
