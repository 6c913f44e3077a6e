package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// ErrNoProgressCheck is returned by NewWatchdog without a progress check: a
// watchdog that pings unconditionally would keep a wedged agent alive, which
// is worse than having none.
var ErrNoProgressCheck = errors.New("sdnotify: watchdog needs a progress check")

// Watchdog pings systemd's service watchdog (WATCHDOG=1) while the agent
// makes progress. The unit's WatchdogSec= is the time systemd waits for a
// ping; it passes it to the process as WATCHDOG_USEC. When the progress
// check fails the pings stop, the reason is logged, and when WatchdogSec
// passes without a ping systemd kills the agent and, with
// Restart=on-failure, starts it again. A check that passes again before
// then resumes the pings: a brief stall is not a restart.
type Watchdog struct {
	interval time.Duration
	progress func() error
	logger   *slog.Logger
}

// NewWatchdog reads the watchdog settings systemd gave this process
// (WATCHDOG_USEC, and WATCHDOG_PID naming this process). progress reports
// whether the agent is making progress (its device readers and its
// publisher are going round their loops); it is called before every ping,
// from Run's goroutine, and must return promptly: a check that blocks
// stops the pings as surely as one that fails. A nil logger discards.
//
// Without a watchdog (not under systemd, WatchdogSec= unset, or the
// settings name another process) the Watchdog is disabled: Interval is 0
// and Run returns at once. Malformed settings are an error.
func NewWatchdog(progress func() error, logger *slog.Logger) (*Watchdog, error) {
	if progress == nil {
		return nil, ErrNoProgressCheck
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// unsetEnvironment false: the settings stay for a later NewWatchdog
	// (tests, a restart of the agent inside one process).
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("sdnotify: watchdog settings from systemd: %w", err)
	}
	return &Watchdog{interval: interval, progress: progress, logger: logger}, nil
}

// Interval is the time systemd waits for a ping before it kills the agent
// (the unit's WatchdogSec=); 0 when there is no watchdog.
func (w *Watchdog) Interval() time.Duration { return w.interval }

// PingPeriod is how often Run checks progress and pings: half the
// interval, as sd_watchdog_enabled(3) recommends, so one late ping is not
// yet a restart.
func (w *Watchdog) PingPeriod() time.Duration { return w.interval / 2 }

// Run checks progress and pings at once, then every PingPeriod, until ctx
// ends. It returns at once when the watchdog is disabled.
func (w *Watchdog) Run(ctx context.Context) {
	if w.interval <= 0 {
		return
	}
	ticker := time.NewTicker(w.PingPeriod())
	defer ticker.Stop()
	var (
		stalled    bool // the last check failed
		sendFailed bool // the last ping could not be sent
	)
	for {
		if err := w.progress(); err != nil {
			if !stalled {
				w.logger.Error("not pinging the systemd watchdog: the agent is not making progress; systemd restarts it if this lasts",
					"err", err, "watchdog", w.interval)
			}
			stalled = true
		} else {
			if stalled {
				w.logger.Info("the agent is making progress again: pinging the systemd watchdog")
			}
			stalled = false
			sent, err := notify(daemon.SdNotifyWatchdog)
			switch {
			case err != nil && !sendFailed:
				w.logger.Warn("systemd watchdog ping not sent", "err", err)
				sendFailed = true
			case err == nil && sendFailed:
				w.logger.Info("systemd watchdog ping sent again")
				sendFailed = false
			case err == nil && !sent && !sendFailed:
				// NOTIFY_SOCKET went away after WATCHDOG_USEC was read:
				// systemd cannot be told, and will restart the agent.
				w.logger.Warn("systemd watchdog ping not sent: NOTIFY_SOCKET is not set")
				sendFailed = true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
