package suntech

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// golden is the expected outcome of one testdata/<case>.hex capture, kept
// beside it as <case>.json. A fresh decoder (idle: no conversation) reads
// the bytes, so results are reported as they arrive.
type golden struct {
	Source   string                 `json:"source"`
	Frames   drivertest.FrameCounts `json:"frames"`
	Readings []readingView          `json:"readings"`
	// CuffPressure is CuffPressure() after the capture; null when not ok.
	CuffPressure *int `json:"cuff_pressure"`
}

// TestCaptures decodes every testdata/*.hex and compares the outcome with
// its golden file, fed in one call and byte by byte.
func TestCaptures(t *testing.T) {
	captures, err := filepath.Glob(filepath.Join("testdata", "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(captures) < 7 {
		t.Fatalf("found %d captures, want at least 7: %v", len(captures), captures)
	}
	for _, path := range captures {
		name := strings.TrimSuffix(filepath.Base(path), ".hex")
		t.Run(name, func(t *testing.T) {
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			input := hexBytes(t, string(text))
			var want golden
			drivertest.ReadGolden(t, strings.TrimSuffix(path, ".hex")+".json", &want)
			if want.Source == "" {
				t.Fatal("golden file names no source")
			}
			if want.Readings == nil {
				want.Readings = []readingView{}
			}
			for _, bytewise := range []bool{false, true} {
				d := NewDecoder(PatientAdult)
				s := &drivertest.Recorder{}
				if bytewise {
					for i := range input {
						d.Feed(input[i:i+1], testNow, s)
					}
				} else {
					d.Feed(input, testNow, s)
				}
				if s.Frames != want.Frames {
					t.Errorf("bytewise=%v: frames = %+v, want %+v", bytewise, s.Frames, want.Frames)
				}
				if got := views(s.Readings); !reflect.DeepEqual(got, want.Readings) {
					t.Errorf("bytewise=%v: readings\n got %v\nwant %v", bytewise, got, want.Readings)
				}
				var got *int
				if p, _, ok := d.CuffPressure(); ok {
					got = &p
				}
				if !reflect.DeepEqual(got, want.CuffPressure) {
					t.Errorf("bytewise=%v: cuff pressure %v, want %v", bytewise, deref(got), deref(want.CuffPressure))
				}
			}
		})
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
