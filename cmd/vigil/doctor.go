package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/vigil-monitor/vigil/agent/doctor"
)

func newDoctorCommand() *cobra.Command {
	var (
		configPath string
		o          doctor.Options
	)
	cmd := &cobra.Command{
		Use:   "doctor --config FILE",
		Short: "Check the whole chain on this machine and say how to fix what is broken",
		Long: `Check, on the room's machine, everything the agent needs: the config is valid;
each device is plugged in and readable and writable by the service user; the
MQTT broker is reachable (with TLS when configured) and accepts the
credentials; the agent serves HTTP; each notification channel can be reached
(nothing is sent); the clock is synchronised; the store's disk has room.

Each line is ok, a warning or a failure, with what to do under it. Nothing is
changed: no message is published, no notification sent, no port opened. Run it
as root (or as the service user) so every file can be examined. The exit
status is 1 when any check fails.`,
		Example: `  sudo vigil doctor --config /etc/vigil/vigil.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config FILE is required")
			}
			if o.Timeout < doctorTimeoutFloor {
				return fmt.Errorf("--timeout %s is too short: at least %s", o.Timeout, doctorTimeoutFloor)
			}
			out := cmd.OutOrStdout()
			o.ServiceUser = orDefault(o.ServiceUser, doctor.DefaultServiceUser)
			fmt.Fprintf(out, "Checking %s for service user %s:\n\n", configPath, o.ServiceUser)
			results := doctor.Diagnose(cmd.Context(), configPath, o)
			printChecklist(out, results, isTerminal(out))
			if _, _, failures := doctor.Summary(results); failures > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "the agent's config file")
	cmd.Flags().StringVar(&o.ServiceUser, "user", doctor.DefaultServiceUser, "the user the agent runs as, whose access to the devices and the store is checked")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", doctor.DefaultTimeout, "time allowed for each check")
	return cmd
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checklistMarks are the status marks: symbols for a person at a terminal,
// plain ASCII for logs, tickets and pipes.
var checklistMarks = map[bool]map[doctor.Status]string{
	true:  {doctor.OK: "✔", doctor.Warn: "!", doctor.Fail: "✘"},
	false: {doctor.OK: "[ok]  ", doctor.Warn: "[warn]", doctor.Fail: "[FAIL]"},
}

// printChecklist writes one line per check, its details and its fix
// indented under it, and a count at the end.
func printChecklist(w io.Writer, results []doctor.Result, terminal bool) {
	marks := checklistMarks[terminal]
	indent := "       "
	if terminal {
		indent = "  "
	}
	for _, r := range results {
		fmt.Fprintf(w, "%s %s: %s\n", marks[r.Status], r.Name, r.Finding)
		for _, d := range r.Details {
			fmt.Fprintf(w, "%s  %s\n", indent, d)
		}
		if r.Status != doctor.OK && r.Fix != "" {
			fmt.Fprintf(w, "%sfix: %s\n", indent, r.Fix)
		}
	}
	ok, warnings, failures := doctor.Summary(results)
	fmt.Fprintf(w, "\n%d ok, %s, %s\n", ok, countOf(warnings, "warning"), countOf(failures, "failure"))
}

func countOf(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// isTerminal reports whether w is a terminal (a tty answering TCGETS).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// doctorTimeoutFloor keeps --timeout sensible: below it a TLS handshake to
// a broker across the network cannot finish and every check would fail.
const doctorTimeoutFloor = 100 * time.Millisecond
