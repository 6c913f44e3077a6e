package hl7

import "bytes"

// MLLP framing (protocols.md 5.2 [C]): every message is sent as
//
//	0x0B <HL7 message> 0x1C 0x0D
//
// over TCP. The framer below splits a byte stream into those blocks, keeps a
// partial block between reads, bounds a block's size and resynchronises on
// the next start byte after anything it cannot use.

// MLLP block bytes.
const (
	startBlock   = 0x0B // VT
	endBlock     = 0x1C // FS
	carriageRet  = 0x0D // CR, ends the block after endBlock
	framingBytes = 3    // start + end + CR
)

// MaxMessageSize caps one HL7 message (the bytes between the start and end
// blocks). A vital-signs push is a few kilobytes (protocols.md 5.2); 1 MiB
// leaves room for a gateway's batch of observations while bounding what one
// connection can make the agent hold. A longer block is discarded and
// counted, and the buffer never grows past it.
const MaxMessageSize = 1 << 20

// maxGarbageRun is how many bytes outside any block are counted before they
// are reported, even if no start block follows: a sender misconfigured to
// send HL7 without MLLP framing shows up as malformed frames within seconds,
// not only when (if ever) a start block arrives. The report points do not
// depend on how the stream was cut into reads.
const maxGarbageRun = 4096

type framerState uint8

const (
	outside  framerState = iota // between blocks: looking for startBlock
	inside                      // in a block: collecting until endBlock
	afterEnd                    // saw endBlock: the next byte must be CR
)

type eventKind uint8

const (
	eventNone      eventKind = iota // p is used up, nothing to report
	eventMessage                    // a complete block: event.content
	eventGarbage                    // bytes outside any block were skipped
	eventTruncated                  // a block cut short: new start block, or endBlock without CR
	eventOversize                   // a block longer than MaxMessageSize
)

// event is what the framer found. content is valid until the next call.
type event struct {
	kind    eventKind
	content []byte
	dropped int // bytes discarded, framing bytes included
}

// framer splits the MLLP stream. The zero value is ready to use.
type framer struct {
	state   framerState
	buf     []byte // content of the current block, when it spans reads
	garbage int    // bytes skipped outside blocks since the last report
}

// next consumes bytes of p up to and including the first event and returns
// it with the count consumed. It returns eventNone only when all of p was
// consumed without an event.
func (f *framer) next(p []byte) (event, int) {
	used := 0
	for used < len(p) {
		switch f.state {
		case outside:
			rest := p[used:]
			i := bytes.IndexByte(rest, startBlock)
			skip := i
			if i < 0 {
				skip = len(rest)
			}
			if f.garbage+skip >= maxGarbageRun {
				n := maxGarbageRun - f.garbage
				f.garbage = 0
				return event{kind: eventGarbage, dropped: maxGarbageRun}, used + n
			}
			f.garbage += skip
			used += skip
			if i < 0 {
				return event{}, used
			}
			used++ // the start block
			f.state = inside
			f.buf = f.buf[:0]
			if f.garbage > 0 {
				n := f.garbage
				f.garbage = 0
				return event{kind: eventGarbage, dropped: n}, used
			}

		case inside:
			rest := p[used:]
			// stop is the first start or end block: everything before it
			// is message content.
			stop := bytes.IndexByte(rest, endBlock)
			scan := rest
			if stop >= 0 {
				scan = rest[:stop]
			}
			if restart := bytes.IndexByte(scan, startBlock); restart >= 0 {
				stop = restart
			}
			n := stop
			if stop < 0 {
				n = len(rest)
			}
			if len(f.buf)+n > MaxMessageSize {
				// Report as soon as the cap is passed, then skip the rest
				// of the block as bytes outside any frame: the buffer
				// stays capped and a block that never ends still shows
				// up. The report point is a byte count, so it does not
				// depend on how the stream was cut into reads.
				over := MaxMessageSize - len(f.buf) + 1
				f.buf = f.buf[:0]
				f.state = outside
				return event{kind: eventOversize, dropped: 1 + MaxMessageSize + 1}, used + over
			}
			if stop < 0 {
				f.buf = append(f.buf, rest...)
				return event{}, len(p)
			}
			used += stop + 1
			if rest[stop] == startBlock {
				// The sender began a new message before ending this one
				// (it restarted, or bytes were lost): this block is cut
				// short. The new block has started: state stays inside.
				dropped := 1 + len(f.buf) + stop
				f.buf = f.buf[:0]
				return event{kind: eventTruncated, dropped: dropped}, used
			}
			f.buf = append(f.buf, rest[:stop]...)
			f.state = afterEnd

		case afterEnd:
			f.state = outside
			if p[used] == carriageRet {
				return event{kind: eventMessage, content: f.buf}, used + 1
			}
			// endBlock not followed by CR: not a well-formed block. The
			// byte is looked at again as the start of what follows.
			dropped := 1 + len(f.buf) + 1
			f.buf = f.buf[:0]
			return event{kind: eventTruncated, dropped: dropped}, used
		}
	}
	return event{}, used
}

// pending reports whether a block has started and not ended.
func (f *framer) pending() bool { return f.state != outside }
