package config

import (
	"strings"
	"testing"
	"time"
)

func TestNIBPSchedule(t *testing.T) {
	cfg, err := Parse("vigil.yaml", []byte("site: a\nroom: b\ndevices:\n  - id: nibp-1\n    driver: suntech-advantage\n    port: /dev/ttyUSB0\n    nibp: {interval: 5m}\n  - id: nibp-2\n    driver: suntech-advantage\n    port: /dev/ttyUSB1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Devices[0].NIBP; n == nil || n.Interval != 5*time.Minute {
		t.Errorf("nibp-1 schedule = %+v, want every 5m", n)
	}
	if cfg.Devices[1].NIBP != nil {
		t.Errorf("nibp-2 has a schedule without nibp: %+v", cfg.Devices[1].NIBP)
	}
	if len(cfg.Devices[0].Options) != 0 {
		t.Errorf("nibp leaked into driver options: %v", cfg.Devices[0].Options)
	}
}

func TestSilentAfter(t *testing.T) {
	cfg, err := Parse("vigil.yaml", []byte("site: a\nroom: b\ndevices:\n  - id: ox\n    driver: masimo-ascii\n    port: /dev/ttyUSB0\n    silent_after: 8s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Devices[0].SilentAfter; got != 8*time.Second {
		t.Errorf("silent_after = %v, want 8s", got)
	}
	_, err = Parse("vigil.yaml", []byte("site: a\nroom: b\ndevices:\n  - id: ox\n    driver: masimo-ascii\n    port: /dev/ttyUSB0\n    silent_after: 100ms\n"))
	if err == nil || !strings.Contains(err.Error(), "vigil.yaml:7: devices[0].silent_after: silent_after 100ms is below the minimum 1s") {
		t.Errorf("short silent_after: %v", err)
	}
}
