package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vigil-monitor/vigil/agent/clocksync"
)

// ClockCheck asks the kernel whether an NTP client disciplines the clock.
// An unsynchronised clock is a warning, as it is a low-priority technical
// alarm for the agent (README, Alarms): monitoring works, but the times of
// a session's record may disagree with the clinic's other records.
func ClockCheck() Check {
	const name = "clock"
	return Check{Name: name, Run: func(context.Context) Result {
		st, err := clocksync.Read()
		if err != nil {
			return warnf(name, "run vigil doctor on the room's machine itself (containers may hide the clock's state)",
				"the clock's synchronisation cannot be read: %v", err)
		}
		if !st.Synchronised {
			return warnf(name, "enable an NTP client: `timedatectl set-ntp true` (systemd-timesyncd) or `apt install chrony`; point it at the clinic's time server if the internet is out of reach",
				"the system clock is not synchronised (no NTP client disciplines it); the agent raises its clock-unsynchronised alarm (always during a session)")
		}
		return okf(name, "synchronised (kernel's maximum error estimate %s)", st.MaxError)
	}}
}

// Disk space limits of DiskCheck.
const (
	// diskFailBelow: below this the store soon stops taking readings (a
	// day of one oximeter's numerics and pleth is tens of MiB).
	diskFailBelow = 100 << 20
	// diskWarnBelow and diskWarnPercent: below either, days of recording
	// are left, and the disk needs attention before a session.
	diskWarnBelow   = 1 << 30
	diskWarnPercent = 10
)

// DiskCheck checks the file system under the store: space left (a failure
// under 100 MiB, a warning under 1 GiB or 10 %), and that the service user
// may write the database (or create it in its directory).
func DiskCheck(path string, o Options) Check {
	o = o.withDefaults()
	const name = "store disk"
	return Check{Name: name, Run: func(context.Context) Result {
		if path == "" {
			return failf(name, "set store.path", "no store path is configured")
		}
		dir := filepath.Dir(path)
		st, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return failf(name, "create "+dir+" owned by "+o.ServiceUser+" (the systemd unit's StateDirectory=vigil creates /var/lib/vigil), or set store.path",
				"the store's directory %s does not exist", dir)
		case err != nil:
			return failf(name, "check the permissions of "+filepath.Dir(dir), "the store's directory %s cannot be examined: %v", dir, err)
		case !st.IsDir():
			return failf(name, "set store.path to a file in a directory", "%s is not a directory", dir)
		}
		var fsStat unix.Statfs_t
		if err := unix.Statfs(dir, &fsStat); err != nil {
			return failf(name, "check the file system of "+dir, "statfs %s: %v", dir, err)
		}
		free := fsStat.Bavail * uint64(fsStat.Bsize)
		total := fsStat.Blocks * uint64(fsStat.Bsize)
		percent := 100.0
		if total > 0 {
			percent = float64(free) * 100 / float64(total)
		}
		space := fmt.Sprintf("%s free of %s (%.0f%%) under %s", bytesText(free), bytesText(total), percent, dir)

		target, need, what := path, uint32(permRead|permWrite), "write the database "+path
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			target, need, what = dir, permWrite|permExec, "create the database in "+dir
		}
		acc, err := serviceAccess(target, need, o)
		if err != nil {
			return failf(name, "check the permissions of "+target, "%s; %s cannot be examined: %v", space, target, err)
		}
		if !acc.ok {
			return failf(name, "chown "+o.ServiceUser+" "+target+" (the systemd unit's StateDirectory=vigil does this for /var/lib/vigil), or set store.path to a directory it owns",
				"%s; %s cannot %s: %s", space, o.ServiceUser, what, acc.how)
		}
		fix := "free space on the disk (old logs, `journalctl --vacuum-size`), shorten store.retention, or set store.max_size_mb"
		switch diskStatus(free, total) {
		case Fail:
			return failf(name, fix, "only %s: the store is about to stop recording", space)
		case Warn:
			return warnf(name, fix, "low on space: %s", space)
		}
		return okf(name, "%s; %s may %s %s", space, o.ServiceUser, what, acc.how)
	}}
}

// diskStatus judges free bytes of total.
func diskStatus(free, total uint64) Status {
	switch {
	case free < diskFailBelow:
		return Fail
	case free < diskWarnBelow || total > 0 && float64(free)*100/float64(total) < diskWarnPercent:
		return Warn
	}
	return OK
}

// bytesText writes a size in binary units, as df -h does.
func bytesText(n uint64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1f TiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
