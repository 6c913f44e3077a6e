package hl7

import (
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Decoder reads HL7 v2 ORU^R01 messages in MLLP framing from one TCP
// connection (protocols.md 5.2). It offers two ways in:
//
//   - Feed, the drivers.Decoder of the registry, for a connection that
//     carries one configured sender: readings go to the sink, every
//     message's outcome is counted with sink.Frame, and messages from any
//     other sender are refused.
//   - FeedMessages, for the agent's listener, which routes each message by
//     its Sender and answers it with ACK.
//
// A Decoder is not safe for concurrent use; use one per connection and one
// of the two ways per Decoder.
type Decoder struct {
	sender string // Feed reports only this sender's readings; "" = any
	acks   bool   // Feed queues ACKs for TakeReplies

	onUnknown  func(UnknownObservation)
	onRejected func(error)

	framer  framer
	delims  delimiters
	fields  [maxFields][]byte
	scratch []byte // unescaped field text of the current message
	keyBuf  []byte
	p       parsed

	unknownKinds map[string]UnknownObservation
	replies      []byte // ACKs queued by Feed, MLLP-framed

	// Last header strings, reused while a monitor keeps sending the same.
	lastSender, lastApp, lastFacility, lastEquipment string
	lastRecvApp, lastRecvFacility, lastVersion       string
	lastProcessingID, lastAcceptAck, lastAppAck      string
	lastType                                         string
}

// Config sets up a Decoder.
type Config struct {
	// Sender is the one sender (Message.Sender) whose readings Feed
	// reports; messages from others are counted as malformed and refused
	// with AE. Empty accepts every sender. FeedMessages ignores it: the
	// agent routes by Message.Sender itself.
	Sender string
	// ACKs makes Feed queue an MLLP-framed ACK for every message that asks
	// for one (Message.WantsACK), to be sent back with TakeReplies. At most
	// maxPendingReplies bytes are kept; later ACKs are dropped until the
	// queue is taken, and the monitor will resend.
	ACKs bool
}

// maxPendingReplies bounds the ACK queue of a Decoder whose owner does not
// take it: about 300 ACKs.
const maxPendingReplies = 64 << 10

// NewDecoder returns a Decoder for one connection.
func NewDecoder(cfg Config) *Decoder {
	return &Decoder{sender: cfg.Sender, acks: cfg.ACKs}
}

// OnUnknown sets a function called with every observation that has no
// catalogue metric, from the Feed or FeedMessages call that decoded it, for
// the agent to count per UnknownObservation.Key and log once per code.
// Repeated observations are the same value (no allocation). Feed calls it
// only for messages it accepts.
func (d *Decoder) OnUnknown(fn func(UnknownObservation)) { d.onUnknown = fn }

// OnRejected sets a function called from Feed with the *Error of every
// frame or message Feed refuses (after its sink.Frame call), so the agent
// can log why; FeedMessages hands errors to its callback instead. Error
// texts never contain patient data.
func (d *Decoder) OnRejected(fn func(error)) { d.onRejected = fn }

// TakeReplies appends the ACKs Feed queued since the last call to dst and
// empties the queue. The agent writes them to the connection after Feed.
func (d *Decoder) TakeReplies(dst []byte) []byte {
	dst = append(dst, d.replies...)
	d.replies = d.replies[:0]
	return dst
}

// Pending reports whether a message has started arriving and not finished:
// a connection closed now loses it.
func (d *Decoder) Pending() bool { return d.framer.pending() }

// Feed consumes p, read at time now, and reports to sink every reading of
// every accepted message, then the message's Frame: FrameOK, or
// FrameInvalidValue when a value was unusable. A message that cannot be
// parsed, from another sender than the configured one, or bytes outside any
// MLLP block are one FrameMalformed each, with the bytes dropped, and no
// readings at all. Partial blocks are kept for the next call.
func (d *Decoder) Feed(p []byte, now time.Time, sink drivers.Sink) {
	for len(p) > 0 {
		ev, n := d.framer.next(p)
		p = p[n:]
		switch ev.kind {
		case eventNone:
		case eventMessage:
			d.feedMessage(ev.content, now, sink)
		default:
			err := framingError(ev)
			sink.Frame(drivers.FrameMalformed, err.Dropped)
			d.rejected(err)
		}
	}
}

func (d *Decoder) feedMessage(content []byte, now time.Time, sink drivers.Sink) {
	dropped := len(content) + framingBytes
	if err := d.parse(content, now); err != nil {
		err.Dropped = dropped
		sink.Frame(drivers.FrameMalformed, dropped)
		d.queueACK(err.AckCode(), err.Error(), now)
		d.rejected(err)
		return
	}
	if d.sender != "" && string(d.p.sender) != d.sender {
		err := &Error{Err: ErrUnknownSender, Field: senderField(&d.p), Sender: d.intern(&d.lastSender, d.p.sender), Dropped: dropped}
		sink.Frame(drivers.FrameMalformed, dropped)
		d.queueACK(AE, err.Error(), now)
		d.rejected(err)
		return
	}
	for i := range d.p.readings {
		sink.Reading(d.p.readings[i])
	}
	d.reportUnknown()
	sink.Frame(d.p.result, 0)
	d.queueACK(AA, "", now)
}

// senderField names where the sender id was read from.
func senderField(p *parsed) string {
	switch {
	case len(p.equipment) > 0:
		return "OBX-18"
	case len(p.facility) > 0:
		return "MSH-4"
	}
	return "MSH-3"
}

// queueACK appends the ACK of d.p (or, without a usable header, one with an
// empty MSA-2) to the reply queue.
func (d *Decoder) queueACK(code AckCode, reason string, now time.Time) {
	if !d.acks || len(d.replies) >= maxPendingReplies {
		return
	}
	h := ackHeader[[]byte]{}
	if d.p.headerOK {
		p := &d.p
		mode := p.appAck
		if len(mode) == 0 {
			mode = p.acceptAck
		}
		if !wantsACK(string(mode), code) {
			return
		}
		h = ackHeader[[]byte]{
			app: p.app, facility: p.facility, recvApp: p.recvApp, recvFacility: p.recvFacility,
			controlID: p.controlID, trigger: p.trigger, version: p.version, processingID: p.processingID,
		}
	}
	d.replies = appendACK(d.replies, &h, code, reason, now)
}

func (d *Decoder) reportUnknown() {
	if d.onUnknown == nil {
		return
	}
	for _, u := range d.p.unknown {
		d.onUnknown(u)
	}
}

func (d *Decoder) rejected(err error) {
	if d.onRejected != nil {
		d.onRejected(err)
	}
}

// FeedMessages consumes p, read at time now, and calls fn once per MLLP
// block or framing problem, in stream order:
//
//   - a message it read: fn(msg, nil), msg.Result FrameOK or
//     FrameInvalidValue;
//   - a message it could not use: fn(msg, err) with err an *Error whose
//     AckCode says how to answer; msg holds the header (ControlID,
//     Sender... for the ACK) and no readings, or is nil when even the MSH
//     segment was unreadable;
//   - bytes outside a block, a cut or oversize block: fn(nil, err).
//
// Every error counts as one FrameMalformed with err.(*Error).Dropped bytes.
// fn owns msg and may keep it. The Config's Sender is not checked here.
func (d *Decoder) FeedMessages(p []byte, now time.Time, fn func(*Message, error)) {
	for len(p) > 0 {
		ev, n := d.framer.next(p)
		p = p[n:]
		switch ev.kind {
		case eventNone:
		case eventMessage:
			if err := d.parse(ev.content, now); err != nil {
				err.Dropped = len(ev.content) + framingBytes
				var msg *Message
				if d.p.headerOK {
					d.p.readings = d.p.readings[:0]
					d.p.unknown = d.p.unknown[:0]
					msg = d.message()
					msg.Result = drivers.FrameMalformed
				}
				fn(msg, err)
				continue
			}
			d.reportUnknown()
			fn(d.message(), nil)
		default:
			fn(nil, framingError(ev))
		}
	}
}

func framingError(ev event) *Error {
	e := &Error{Dropped: ev.dropped}
	switch ev.kind {
	case eventGarbage:
		e.Err = ErrGarbage
	case eventTruncated:
		e.Err = ErrTruncated
	default:
		e.Err = ErrOversize
	}
	return e
}
