package clocksync

import (
	"os/exec"
	"strings"
	"testing"
)

// TestReadAgreesWithAdjtimex compares Read with the kernel's answer as
// another tool reports it, where one is installed (adjtimex(8) or
// timedatectl); without one it checks that Read works and is consistent.
func TestReadAgreesWithAdjtimex(t *testing.T) {
	s, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxError < 0 {
		t.Errorf("negative max error %v", s.MaxError)
	}
	if out, err := exec.Command("timedatectl", "show", "-p", "NTPSynchronized", "--value").Output(); err == nil {
		want := strings.TrimSpace(string(out)) == "yes"
		if s.Synchronised != want {
			t.Errorf("Read says synchronised=%v, timedatectl says %q", s.Synchronised, strings.TrimSpace(string(out)))
		}
	}
	again, err := Read()
	if err != nil || again.Synchronised != s.Synchronised {
		t.Errorf("second read %+v, %v; first %+v", again, err, s)
	}
	t.Logf("clock: %+v", s)
}
