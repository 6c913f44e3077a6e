// Package exec runs a local command for each alarm event, for what no
// network service does: sound a speaker or light a lamp in the room, write
// to a pager attached to the PC.
//
// The command is started directly from its argv (no shell, so nothing in an
// event is ever interpreted as shell syntax). It gets the event as one JSON
// line on stdin and as VIGIL_* environment variables. Its exit status is the
// verdict: 0 delivered, 75 (EX_TEMPFAIL of sysexits.h) retry, any other
// status give up. A command still running at the timeout is killed with its
// whole process group and the event is retried.
package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// ExitTempFail is EX_TEMPFAIL from sysexits.h ("temporary failure; user is
// invited to retry"), the status a command uses to ask for a retry.
const ExitTempFail = 75

// MaxStderr bounds the stderr kept for the error: enough for a message, not
// for a runaway command's output.
const MaxStderr = 4096

// pipeGrace bounds how long, after the command exits, Notify waits for its
// stderr to close. Only a descendant that left the process group (setsid)
// can hold it open that long.
const pipeGrace = 2 * time.Second

// passedEnv names the variables of the agent's own environment a command
// inherits: enough to find programs and reach the sound server
// (XDG_RUNTIME_DIR holds the PipeWire and PulseAudio sockets). Everything
// else stays out, so no secret in the agent's environment leaks to scripts.
var passedEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "XDG_RUNTIME_DIR"}

// Config of one exec channel.
type Config struct {
	Name string
	// Command is the argv; Command[0] is an absolute path or a name found in
	// PATH when New runs.
	Command []string
	// Timeout bounds one run; 0 means notify.DefaultTimeout.
	Timeout time.Duration
}

// ConfigError says a Config cannot work; New returns it.
type ConfigError struct {
	Channel string
	Reason  string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("exec channel %q: %s", e.Channel, e.Reason)
}

// ExitError is a command that exited with a non-zero status.
type ExitError struct {
	Code   int
	Stderr string // start of its stderr, at most MaxStderr bytes
}

func (e *ExitError) Error() string {
	return withStderr(fmt.Sprintf("exit status %d", e.Code), e.Stderr)
}

// SignalError is a command killed by a signal Vigil did not send (the OOM
// killer, an operator).
type SignalError struct {
	Signal syscall.Signal
	Stderr string
}

func (e *SignalError) Error() string {
	return withStderr(fmt.Sprintf("killed by signal %s", e.Signal), e.Stderr)
}

// TimeoutError is a command Vigil killed because its context ended: the
// channel's Timeout or the caller's ctx. It unwraps to the context error.
type TimeoutError struct {
	Cause  error
	Stderr string
}

func (e *TimeoutError) Error() string {
	return withStderr(fmt.Sprintf("killed with its process group: %v", e.Cause), e.Stderr)
}

func (e *TimeoutError) Unwrap() error { return e.Cause }

func withStderr(msg, stderr string) string {
	if stderr == "" {
		return msg
	}
	return msg + ": stderr: " + stderr
}

// Notifier runs one configured command per event.
type Notifier struct {
	name    string
	path    string   // Command[0] resolved by New
	argv    []string // as configured, argv[0] included
	timeout time.Duration
	logger  *slog.Logger
}

// New checks c and resolves the command, so a missing program fails at
// start, not during an alarm.
func New(c Config, logger *slog.Logger) (*Notifier, error) {
	if logger == nil {
		logger = slog.Default()
	}
	bad := func(format string, a ...any) error {
		return &ConfigError{Channel: c.Name, Reason: fmt.Sprintf(format, a...)}
	}
	if c.Name == "" {
		return nil, bad("name is empty")
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return nil, bad("command is empty")
	}
	for _, arg := range c.Command {
		if strings.IndexByte(arg, 0) >= 0 {
			return nil, bad("command contains a NUL byte")
		}
	}
	if c.Timeout < 0 {
		return nil, bad("timeout is negative")
	}
	path, err := osexec.LookPath(c.Command[0])
	if err != nil {
		return nil, bad("command: %v", err)
	}
	n := &Notifier{
		name:    c.Name,
		path:    path,
		argv:    append([]string(nil), c.Command...),
		timeout: c.Timeout,
		logger:  logger.With("channel", c.Name),
	}
	if n.timeout == 0 {
		n.timeout = notify.DefaultTimeout
	}
	return n, nil
}

// Name is the channel's configured name.
func (n *Notifier) Name() string { return n.name }

// Notify runs the command for ev and waits for it, at most Timeout or
// until ctx ends. When the command exits, whatever it left running in its
// process group is killed too: a notification is one run, and repeated
// alarms must not pile up orphaned players holding the speaker.
func (n *Notifier) Notify(ctx context.Context, ev alarm.Event) notify.Result {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()

	payload, err := json.Marshal(eventJSON{Event: ev, Priority: ev.Priority.String()})
	if err != nil {
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("exec: encoding event: %w", err)}
	}
	stderr := &boundedBuffer{limit: MaxStderr}
	cmd := &osexec.Cmd{
		Path:   n.path,
		Args:   n.argv,
		Env:    environment(ev),
		Stdin:  bytes.NewReader(append(payload, '\n')),
		Stdout: nil, // /dev/null: the verdict is the exit status
		Stderr: stderr,
		// Its own process group, so a timeout kills the command and
		// everything it started, not just the first process.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   pipeGrace,
	}
	if err := cmd.Start(); err != nil {
		verdict := notify.Retry // fork limits, memory: may pass later
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
			verdict = notify.GiveUp // the program is gone or not runnable: a config problem
		}
		return notify.Result{Verdict: verdict, Err: fmt.Errorf("exec: starting %s: %w", n.argv[0], err)}
	}
	pgid := cmd.Process.Pid

	// exited reports the command's exit without reaping it: until cmd.Wait
	// reaps it, its pid (and so its process-group id) cannot be reused, so
	// killing the group below can only reach the command's own processes.
	exited := make(chan error, 1)
	go func() { exited <- waitExitNoReap(pgid) }()

	var cause error
	select {
	case err := <-exited:
		if err != nil {
			n.logger.Warn("waiting for the command without reaping failed; killing its group", "err", err)
		}
	case <-ctx.Done():
		cause = ctx.Err()
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	// Leftovers of a command that exited (or the rest of a killed one).
	// ESRCH just means the group is already empty.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	waitErr := cmd.Wait()
	if errors.Is(waitErr, osexec.ErrWaitDelay) {
		n.logger.Warn("a process the command started left its process group and kept stderr open; it was not stopped")
	}

	state := cmd.ProcessState
	if state == nil {
		return notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("exec: %s: %w", n.argv[0], waitErr)}
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	switch {
	case cause != nil && ws.Signaled():
		// Our SIGKILL; a command that exited just as ctx ended keeps its
		// own status below.
		return notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("exec: %s: %w", n.argv[0], &TimeoutError{Cause: cause, Stderr: stderr.String()})}
	case ws.Signaled():
		return notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("exec: %s: %w", n.argv[0], &SignalError{Signal: ws.Signal(), Stderr: stderr.String()})}
	case state.ExitCode() == 0:
		return notify.Result{Verdict: notify.Delivered}
	case state.ExitCode() == ExitTempFail:
		return notify.Result{Verdict: notify.Retry, Err: fmt.Errorf("exec: %s: %w", n.argv[0], &ExitError{Code: ExitTempFail, Stderr: stderr.String()})}
	default:
		return notify.Result{Verdict: notify.GiveUp, Err: fmt.Errorf("exec: %s: %w", n.argv[0], &ExitError{Code: state.ExitCode(), Stderr: stderr.String()})}
	}
}

// waitExitNoReap blocks until process pid has exited, leaving it a zombie
// for cmd.Wait to reap (waitid with WNOWAIT).
func waitExitNoReap(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != syscall.EINTR {
			return err
		}
	}
}

// eventJSON is the event as the command reads it on stdin: alarm.Event's
// own JSON plus the priority's name, which Event leaves to encoders.
type eventJSON struct {
	alarm.Event
	Priority string `json:"priority"`
}

// environment is the command's whole environment: passedEnv from the agent
// and the event as VIGIL_* variables (empty when the event has no value).
func environment(ev alarm.Event) []string {
	env := make([]string, 0, len(passedEnv)+17)
	for _, name := range passedEnv {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	optional := func(v *float64) string {
		if v == nil {
			return ""
		}
		return strconv.FormatFloat(*v, 'f', -1, 64)
	}
	timestamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, kv := range [][2]string{
		{"VIGIL_ALARM_ID", ev.AlarmID},
		{"VIGIL_EVENT_ID", ev.EventID},
		{"VIGIL_PHASE", string(ev.Phase)},
		{"VIGIL_PRIORITY", ev.Priority.String()},
		{"VIGIL_MARKER", ev.Priority.Marker()},
		{"VIGIL_KIND", string(ev.Kind)},
		{"VIGIL_STATE", string(ev.State)},
		{"VIGIL_TEXT", ev.Text},
		{"VIGIL_SITE", ev.Site},
		{"VIGIL_ROOM", ev.Room},
		{"VIGIL_DEVICE", ev.Device},
		{"VIGIL_METRIC", ev.Metric},
		{"VIGIL_VALUE", optional(ev.Value)},
		{"VIGIL_LIMIT", optional(ev.Limit)},
		{"VIGIL_UNIT", ev.Unit},
		{"VIGIL_CONDITION", ev.Condition},
		{"VIGIL_ONSET", timestamp(ev.Onset)},
		{"VIGIL_ACK_URL", ev.AckURL},
	} {
		// A NUL byte cannot pass through execve; drop it rather than fail
		// the alarm.
		env = append(env, kv[0]+"="+strings.ReplaceAll(kv[1], "\x00", ""))
	}
	return env
}

// boundedBuffer keeps the first limit bytes written and discards the rest,
// always reporting success so the command never blocks or fails on stderr.
type boundedBuffer struct {
	mu        sync.Mutex
	buf       []byte
	limit     int
	truncated bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.limit - len(b.buf)
	if len(p) > room {
		b.truncated = true
		b.buf = append(b.buf, p[:max(room, 0)]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

// String is the kept stderr, trimmed, valid UTF-8, marked when cut.
func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(strings.ToValidUTF8(string(b.buf), "\uFFFD"))
	if b.truncated {
		s += " [truncated]"
	}
	return s
}
