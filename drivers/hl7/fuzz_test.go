package hl7

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// checkReadings asserts what must hold for any reading: a metric this
// driver lists, Valid only in range and without FlagOutOfRange, only the
// flags this driver sets.
func checkReadings(t *testing.T, rs []drivers.Reading) {
	t.Helper()
	for _, r := range rs {
		listed := false
		for _, m := range metrics {
			listed = listed || m == r.Metric
		}
		if !listed {
			t.Fatalf("reading of metric %v", r.Metric)
		}
		if r.Flags&^drivers.FlagOutOfRange != 0 {
			t.Fatalf("flags %v", r.Flags)
		}
		if r.Valid && (!r.Metric.Info().InRange(r.Value) || r.Flags != 0) {
			t.Fatalf("Valid reading %v", viewOf(r))
		}
		if !r.Received.Equal(testNow) {
			t.Fatalf("Received %v", r.Received)
		}
	}
}

// FuzzDecoder feeds any byte stream (framing and parsing together). It
// checks: no panic; readings as checkReadings says; every byte either part
// of a good frame or counted as dropped (never more than were fed); the
// buffer capped; the same frames and readings whether the stream comes in
// one call, cut at any point, or byte by byte; FeedMessages agreeing with
// Feed; every message's ACK a well-formed MLLP block. Seeds:
// testdata/fuzz/FuzzDecoder.
func FuzzDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		d := NewDecoder(Config{ACKs: true})
		whole := &drivertest.Recorder{}
		d.Feed(data, testNow, whole)
		checkReadings(t, whole.Readings)
		if cap(d.framer.buf) > MaxMessageSize {
			t.Fatalf("buffer grew to %d", cap(d.framer.buf))
		}
		if whole.Frames.Dropped > len(data) || whole.Frames.Checksum != 0 {
			t.Fatalf("frames %+v from %d bytes", whole.Frames, len(data))
		}
		replies := d.TakeReplies(nil)
		for len(replies) > 0 {
			end := bytes.Index(replies, []byte{endBlock, carriageRet})
			if replies[0] != startBlock || end < 0 || bytes.IndexByte(replies[1:end], startBlock) >= 0 {
				t.Fatalf("malformed ACK stream %q", replies)
			}
			ack := replies[1:end]
			if !bytes.HasPrefix(ack, []byte("MSH|^~\\&|")) || !bytes.Contains(ack, []byte("\rMSA|A")) {
				t.Fatalf("ACK %q", ack)
			}
			for _, c := range ack {
				if c < ' ' && c != '\r' {
					t.Fatalf("control byte in ACK %q", ack)
				}
			}
			replies = replies[end+2:]
		}

		cut := int(split % uint(len(data)+1))
		parts := drivertest.FeedCut(NewDecoder(Config{}), data, cut, testNow)
		if parts.Frames != whole.Frames || !reflect.DeepEqual(views(parts.Readings), views(whole.Readings)) {
			t.Fatalf("cut at %d: %+v %v; one call %+v %v", cut, parts.Frames, views(parts.Readings), whole.Frames, views(whole.Readings))
		}
		if len(data) <= 4096 {
			bytewise := decodeByteByByte(data)
			if bytewise.Frames != whole.Frames || !reflect.DeepEqual(views(bytewise.Readings), views(whole.Readings)) {
				t.Fatalf("byte by byte: %+v %v; one call %+v %v", bytewise.Frames, views(bytewise.Readings), whole.Frames, views(whole.Readings))
			}
		}

		var fromMessages []drivers.Reading
		var counts drivertest.FrameCounts
		NewDecoder(Config{}).FeedMessages(data, testNow, func(m *Message, err error) {
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Err == nil || e.Error() == "" {
					t.Fatalf("error %#v", err)
				}
				if m != nil && len(m.Readings) != 0 {
					t.Fatalf("refused message with readings")
				}
				counts.Malformed++
				counts.Dropped += e.Dropped
				return
			}
			if m.Sender == "" || m.ControlID == "" {
				t.Fatalf("accepted message without sender or control id: %+v", m)
			}
			if m.Result == drivers.FrameOK {
				counts.OK++
			} else {
				counts.InvalidValue++
			}
			fromMessages = append(fromMessages, m.Readings...)
			ACK(m, AA, "", testNow)
		})
		if counts != whole.Frames || !reflect.DeepEqual(views(fromMessages), views(whole.Readings)) {
			t.Fatalf("FeedMessages %+v %v; Feed %+v %v", counts, views(fromMessages), whole.Frames, views(whole.Readings))
		}
	})
}

// FuzzMessage fuzzes the HL7 text of one message, framed, so the fuzzer
// spends its time in the parser rather than finding start blocks. Seeds:
// testdata/fuzz/FuzzMessage.
func FuzzMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		if bytes.IndexByte(msg, startBlock) >= 0 || bytes.IndexByte(msg, endBlock) >= 0 {
			return // framing bytes are FuzzDecoder's
		}
		input := append(append([]byte{startBlock}, msg...), endBlock, carriageRet)
		s := decodeAll(input)
		checkReadings(t, s.Readings)
		if frames := s.Frames.OK + s.Frames.InvalidValue + s.Frames.Malformed; frames != 1 {
			t.Fatalf("one block gave %+v", s.Frames)
		}
		if s.Frames.Malformed == 1 && (len(s.Readings) != 0 || s.Frames.Dropped != len(input)) {
			t.Fatalf("refused message: %+v %v", s.Frames, views(s.Readings))
		}
		NewDecoder(Config{}).FeedMessages(input, testNow, func(m *Message, err error) {
			if m == nil {
				return
			}
			for _, code := range []AckCode{AA, AE, AR} {
				ack := ACK(m, code, "reason", testNow)
				// The ACK must itself be a message this parser reads as one
				// MSH with the same control id.
				p := NewDecoder(Config{})
				if perr := p.parse(ack[1:len(ack)-2], testNow); perr != nil && !errors.Is(perr, ErrUnsupported) {
					t.Fatalf("ACK %q does not parse: %v", ack, perr)
				}
				if string(p.p.controlID) != m.ControlID {
					t.Fatalf("ACK control id %q, message %q", p.p.controlID, m.ControlID)
				}
			}
		})
	})
}
