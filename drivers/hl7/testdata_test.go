package hl7

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// golden is the expected outcome of one testdata/<case>.bin (raw MLLP
// stream bytes), kept beside it as <case>.json.
type golden struct {
	Source   string                 `json:"source"`   // where the bytes come from
	Frames   drivertest.FrameCounts `json:"frames"`   // what Feed counts
	Messages []messageView          `json:"messages"` // what FeedMessages reports, in order
	Readings []readingView          `json:"readings"` // Feed's readings, in order
}

// messageView is one FeedMessages callback.
type messageView struct {
	Error     string   `json:"error,omitempty"` // the sentinel's text, "" when accepted
	Sender    string   `json:"sender,omitempty"`
	ControlID string   `json:"control_id,omitempty"`
	Readings  int      `json:"readings"`
	Unknown   []string `json:"unknown,omitempty"` // UnknownObservation.Key, with "(recognised)"
}

func messageViews(input []byte) []messageView {
	out := []messageView{}
	NewDecoder(Config{}).FeedMessages(input, testNow, func(m *Message, err error) {
		var v messageView
		if err != nil {
			var e *Error
			errors.As(err, &e)
			v.Error = e.Err.Error()
		}
		if m != nil {
			v.Sender, v.ControlID, v.Readings = m.Sender, m.ControlID, len(m.Readings)
			for _, u := range m.Unknown {
				k := u.Key()
				if u.Recognised {
					k += " (recognised)"
				}
				v.Unknown = append(v.Unknown, k)
			}
		}
		out = append(out, v)
	})
	return out
}

// TestCaptures decodes every testdata/*.bin and compares the result with
// its golden file, fed in one call and byte by byte.
func TestCaptures(t *testing.T) {
	captures, err := filepath.Glob(filepath.Join("testdata", "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(captures) < 6 {
		t.Fatalf("found %d captures, want at least 6: %v", len(captures), captures)
	}
	for _, path := range captures {
		name := strings.TrimSuffix(filepath.Base(path), ".bin")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want golden
			drivertest.ReadGolden(t, strings.TrimSuffix(path, ".bin")+".json", &want)
			if want.Source == "" {
				t.Fatalf("golden file names no source")
			}
			for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(input), "byte by byte": decodeByteByByte(input)} {
				if s.Frames != want.Frames {
					t.Errorf("%s: frames %+v, want %+v", how, s.Frames, want.Frames)
				}
				if got := views(s.Readings); !reflect.DeepEqual(got, want.Readings) {
					t.Errorf("%s: readings\n got %v\nwant %v", how, got, want.Readings)
				}
			}
			if got := messageViews(input); !reflect.DeepEqual(got, want.Messages) {
				t.Errorf("messages\n got %+v\nwant %+v", got, want.Messages)
			}
		})
	}
}
