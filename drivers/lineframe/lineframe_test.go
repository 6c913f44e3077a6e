package lineframe

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// collect feeds chunks to s and returns what it reported, in order:
// "line:<text>" per line and "overlong:<n>" per discarded line.
func collect(s *Splitter, maxLen int, chunks ...string) []string {
	var got []string
	for _, c := range chunks {
		for p := []byte(c); len(p) > 0; {
			var line []byte
			var overlong int
			line, overlong, p = s.Next(p, maxLen)
			switch {
			case overlong > 0 && line != nil:
				panic("both a line and an overlong count")
			case overlong > 0:
				got = append(got, fmt.Sprintf("overlong:%d", overlong))
			case len(line) > 0:
				got = append(got, "line:"+string(line))
			}
		}
	}
	return got
}

func TestSplit(t *testing.T) {
	const maxLen = 8
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"CRLF, CR and LF all end a line", "ab\r\ncd\ref\n", []string{"line:ab", "line:cd", "line:ef"}},
		{"LFCR ends a line too", "ab\n\rcd\n", []string{"line:ab", "line:cd"}},
		{"empty lines are no frames", "\r\n\r\n\n\rab\r\n\r\n", []string{"line:ab"}},
		{"an unfinished line is kept, not reported", "ab\r\ncd", []string{"line:ab"}},
		{"exactly maxLen is a line", "12345678\r\n", []string{"line:12345678"}},
		{"one over is discarded, counted once", "123456789\r\nab\r\n", []string{"overlong:9", "line:ab"}},
		{"a long run is one discard", strings.Repeat("x", 100) + "\nab\n", []string{"overlong:100", "line:ab"}},
		{"a line end right after an overlong run", strings.Repeat("x", 9) + "\r\n\r\nab\r\n", []string{"overlong:9", "line:ab"}},
	}
	for _, tt := range tests {
		whole := collect(&Splitter{}, maxLen, tt.input)
		if !reflect.DeepEqual(whole, tt.want) {
			t.Errorf("%s: one call %q, want %q", tt.name, whole, tt.want)
		}
		var bytewise []string
		s := NewSplitter(maxLen)
		for i := range len(tt.input) {
			bytewise = append(bytewise, collect(&s, maxLen, tt.input[i:i+1])...)
		}
		if !reflect.DeepEqual(bytewise, tt.want) {
			t.Errorf("%s: byte by byte %q, want %q", tt.name, bytewise, tt.want)
		}
		for cut := range len(tt.input) + 1 {
			s := NewSplitter(maxLen)
			if got := collect(&s, maxLen, tt.input[:cut], tt.input[cut:]); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s: cut at %d %q, want %q", tt.name, cut, got, tt.want)
			}
		}
	}
}

// A stream without line ends never grows the buffer past maxLen, and the
// bytes are all counted when the line end finally comes.
func TestEndlessLineCapped(t *testing.T) {
	const maxLen = 16
	s := NewSplitter(maxLen)
	chunk := bytes.Repeat([]byte{'x'}, 7)
	var reported []string
	for range 1000 {
		reported = append(reported, collect(&s, maxLen, string(chunk))...)
		if s.BufferCap() > maxLen {
			t.Fatalf("buffer grew to %d", s.BufferCap())
		}
	}
	if len(reported) != 0 {
		t.Fatalf("reported %v before the line end", reported)
	}
	if got := collect(&s, maxLen, "\nok\n"); !reflect.DeepEqual(got, []string{"overlong:7000", "line:ok"}) {
		t.Fatalf("got %v", got)
	}
}

func TestNextDoesNotAllocate(t *testing.T) {
	const maxLen = 64
	s := NewSplitter(maxLen)
	input := []byte("SPO2=097 HR=072\r\n")
	lines := 0
	n := testing.AllocsPerRun(100, func() {
		for _, p := range [][]byte{input[:5], input[5:]} {
			for len(p) > 0 {
				var line []byte
				var overlong int
				line, overlong, p = s.Next(p, maxLen)
				if overlong > 0 {
					t.Fatal("overlong")
				}
				if len(line) > 0 {
					lines++
				}
			}
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per line", n)
	}
	if lines != 101 {
		t.Fatalf("%d lines, want 101", lines)
	}
}
