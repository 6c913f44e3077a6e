package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// crashChildEnv makes the test binary run runCrashChild on the database path
// it names instead of the tests.
const crashChildEnv = "VIGIL_STORE_CRASH_CHILD"

// runCrashChild streams readings with their outbox messages into the store
// until it is killed, printing "committed <outbox id> <seq>" for every entry
// OnCommit reports, after the commit.
func runCrashChild(path string) int {
	s, err := Open(path, Options{Logger: discardLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	w := s.NewWriter(WriterOptions{OnCommit: func(entries []OutboxEntry) {
		for _, e := range entries {
			seq := strings.TrimPrefix(string(e.Payload), "seq=")
			fmt.Fprintf(out, "committed %d %s\n", e.ID, seq)
		}
		// One flush per commit: the parent sees each commit's lines as
		// soon as it is done.
		if err := out.Flush(); err != nil {
			os.Exit(3)
		}
	}})
	go func() {
		for seq := uint64(1); ; seq++ {
			r := &drivers.Reading{Device: "ox", Seq: seq, Metric: drivers.SpO2, Value: 97, Valid: true, Received: time.Now()}
			it := Item{Reading: r, Outbox: &Message{Topic: "vigil/s/r/ox/spo2", Payload: fmt.Appendf(nil, "seq=%d", seq), QoS: 1}}
			for {
				err := w.Add(it)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrQueueFull) {
					fmt.Fprintln(os.Stderr, "child add:", err)
					os.Exit(4)
				}
				time.Sleep(time.Millisecond)
			}
			if seq%7 == 0 {
				// Vary the batch sizes.
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	// Runs until SIGKILL.
	err = w.Run(context.Background())
	fmt.Fprintln(os.Stderr, "child run returned:", err)
	return 5
}

// TestCrashKeepsCommitted kills a writing process with SIGKILL and checks
// that every entry whose commit OnCommit reported before the kill is in the
// reopened store, with its reading.
func TestCrashKeepsCommitted(t *testing.T) {
	for round := 0; round < 2; round++ {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "crash.db")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Kill after a number of committed lines that differs by round,
			// so the kill lands at different points of a commit.
			killAfter := 3000 + round*1777
			committed := map[int64]uint64{}
			var maxSeq uint64
			sc := bufio.NewScanner(stdout)
			killed := false
			for sc.Scan() {
				var id int64
				var seq uint64
				if _, err := fmt.Sscanf(sc.Text(), "committed %d %d", &id, &seq); err != nil {
					// Only the last line can be cut short by the kill.
					continue
				}
				committed[id] = seq
				maxSeq = max(maxSeq, seq)
				if !killed && len(committed) >= killAfter {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					killed = true
				}
			}
			err = cmd.Wait()
			if !killed {
				t.Fatalf("child ended before the kill: %v\n%s", err, stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die of SIGKILL: %v\n%s", err, stderr.String())
			}

			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			entries, err := s.Outbox(0, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			stored := make(map[int64]string, len(entries))
			for _, e := range entries {
				stored[e.ID] = string(e.Payload)
			}
			for id, seq := range committed {
				if got, ok := stored[id]; !ok || got != "seq="+strconv.FormatUint(seq, 10) {
					t.Fatalf("outbox entry %d (seq %d) reported committed is %q after the crash", id, seq, got)
				}
			}
			readings, err := s.Readings(ReadingQuery{Devices: []string{"ox"}})
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(readings)) < maxSeq {
				t.Fatalf("%d readings after the crash, %d reported committed", len(readings), maxSeq)
			}
			// No gap: readings 1..n all present, in order.
			for i, r := range readings {
				if r.Seq != uint64(i+1) {
					t.Fatalf("reading %d has seq %d", i, r.Seq)
				}
			}
			last, err := s.LastSeq()
			if err != nil || last["ox"] < maxSeq {
				t.Errorf("LastSeq %v after the crash, %d reported committed (%v)", last, maxSeq, err)
			}
			t.Logf("killed after %d reported entries; %d in the store", len(committed), len(entries))
		})
	}
}
