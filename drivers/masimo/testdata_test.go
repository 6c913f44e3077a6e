package masimo

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// golden is the expected outcome of one testdata/<case>.txt capture, kept
// beside it as <case>.json (tests as data, like Telegraf's testcases).
type golden struct {
	Source   string                 `json:"source"` // where the bytes come from
	Frames   drivertest.FrameCounts `json:"frames"`
	Readings []readingView          `json:"readings"`
}

// TestCaptures decodes every testdata/*.txt and compares the result with
// its golden file, fed in one call and byte by byte.
func TestCaptures(t *testing.T) {
	captures, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(captures) < 6 {
		t.Fatalf("found %d captures in testdata, want at least 6: %v", len(captures), captures)
	}
	for _, path := range captures {
		name := strings.TrimSuffix(filepath.Base(path), ".txt")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want golden
			drivertest.ReadGolden(t, strings.TrimSuffix(path, ".txt")+".json", &want)
			if want.Source == "" {
				t.Fatalf("golden file names no source")
			}
			if want.Readings == nil {
				want.Readings = []readingView{}
			}
			for how, s := range map[string]*drivertest.Recorder{
				"one call":     decodeAll(input),
				"byte by byte": decodeByteByByte(input),
			} {
				if s.Frames != want.Frames {
					t.Errorf("%s: frames = %+v, want %+v", how, s.Frames, want.Frames)
				}
				if got := views(s.Readings); !reflect.DeepEqual(got, want.Readings) {
					t.Errorf("%s: readings\n got %v\nwant %v", how, got, want.Readings)
				}
			}
		})
	}
}
