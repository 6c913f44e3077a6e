// Package lineframe cuts a text device's byte stream into lines, for the
// drivers whose frames are lines ended by CR, LF or CRLF (Masimo ASCII 1,
// protocols.md 2.2; Nonin ASCII, protocols.md 1.6). It keeps the start of a
// line between reads, so a line cut by the serial driver anywhere reads the
// same, and caps what it keeps, so a stream without line ends cannot grow
// its buffer.
package lineframe

import "bytes"

// Splitter holds the unfinished line between Next calls. The zero value is
// ready to use (its buffer is allocated on first need); a Splitter from
// NewSplitter never allocates. A Splitter is not safe for concurrent use.
type Splitter struct {
	pending []byte // the start of a line whose end has not arrived yet
	// discarding is set while skipping the rest of an overlong line;
	// discarded counts the bytes skipped so far, reported once at its end.
	discarding bool
	discarded  int
}

// NewSplitter returns a Splitter with its buffer allocated for lines of up
// to maxLen bytes.
func NewSplitter(maxLen int) Splitter {
	return Splitter{pending: make([]byte, 0, maxLen)}
}

// Next cuts what it can from p and returns one of: a complete line of 1
// to maxLen bytes (line end excluded); or, for a line longer than maxLen,
// the number of its bytes discarded, counted once at its line end; or
// neither, for an empty line (the LF of a CRLF pair, a blank line: no
// frame) or when p ends before a line end, whose bytes it keeps for the
// next call (rest is then empty). rest is what is left of p: call Next
// again until it is empty. line may share the Splitter's buffer: it is
// valid until the next call. maxLen must be the same on every call.
//
// A caller's loop, rather than a callback per line, keeps the decoder's
// call to its line parser direct: the Masimo line benchmark (protocols.md
// 2.5) measured a callback a few percent slower per line.
func (s *Splitter) Next(p []byte, maxLen int) (line []byte, overlong int, rest []byte) {
	end := indexLineEnd(p)
	if end < 0 {
		s.keep(p, maxLen)
		return nil, 0, nil
	}
	chunk, rest := p[:end], p[end+1:]
	if s.discarding {
		n := s.discarded + len(chunk)
		s.discarding, s.discarded = false, 0
		return nil, n, rest
	}
	if len(s.pending) > 0 {
		n := len(s.pending) + len(chunk)
		if n > maxLen {
			s.pending = s.pending[:0]
			return nil, n, rest
		}
		chunk = append(s.pending, chunk...)
		s.pending = s.pending[:0] // chunk keeps the bytes until the next call
	}
	if len(chunk) > maxLen {
		return nil, len(chunk), rest
	}
	return chunk, 0, rest
}

// BufferCap is the capacity of the unfinished-line buffer, for tests that
// check it stays capped at maxLen.
func (s *Splitter) BufferCap() int { return cap(s.pending) }

// keep stores the unfinished tail of a line, or starts discarding it once it
// exceeds maxLen.
func (s *Splitter) keep(p []byte, maxLen int) {
	if s.discarding {
		s.discarded += len(p)
		return
	}
	if len(s.pending)+len(p) > maxLen {
		s.discarding = true
		s.discarded = len(s.pending) + len(p)
		s.pending = s.pending[:0]
		return
	}
	if s.pending == nil {
		s.pending = make([]byte, 0, maxLen)
	}
	s.pending = append(s.pending, p...)
}

// indexLineEnd returns the index of the first CR or LF in p, or -1. Two
// bytes.IndexByte scans (vectorised) beat one byte-by-byte loop.
func indexLineEnd(p []byte) int {
	cr := bytes.IndexByte(p, '\r')
	if cr >= 0 {
		p = p[:cr]
	}
	if lf := bytes.IndexByte(p, '\n'); lf >= 0 {
		return lf
	}
	return cr
}
