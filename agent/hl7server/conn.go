package hl7server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/hl7"
)

// connection is one monitor's TCP connection: its own decoder (an
// hl7.Decoder keeps partial blocks between reads and is not shared) and the
// devices it has delivered messages for.
type connection struct {
	s      *Server
	c      net.Conn
	remote string
	dec    *hl7.Decoder
	// devices whose sender this connection delivered a message from, in
	// order of first message. Each holds one count in device.conns.
	devices  []*device
	now      time.Time // receive time of the bytes being decoded
	replies  []byte    // ACKs for the bytes being decoded
	messages int       // messages routed to a device
}

// Reasons a connection ended, as given to OnStatus.
const (
	reasonStopping = "agent stopping"
	reasonClosed   = "connection closed by the monitor"
)

// serveConn reads one connection until it ends, then reports the devices
// it spoke for as disconnected when it was their last connection.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	// Closing the connection is what interrupts a blocked Read at a stop.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	cn := &connection{s: s, c: c, remote: c.RemoteAddr().String(), dec: hl7.NewDecoder(hl7.Config{})}
	s.log.Info("HL7 connection opened", "addr", s.Addr(), "remote", cn.remote)

	reason := cn.read(ctx)
	_ = c.Close()
	now := time.Now()
	if cn.dec.Pending() {
		// A message had started and will never end: it is lost. Counted
		// like any other block cut short.
		cn.lostBlock()
	}
	for _, d := range cn.devices {
		d.mu.Lock()
		d.conns--
		if d.conns == 0 {
			s.log.Info("HL7 device disconnected", "device", d.id, "sender", d.sender, "remote", cn.remote, "reason", reason)
			if s.onStatus != nil {
				s.onStatus(d.id, false, now, reason)
			}
		}
		d.mu.Unlock()
	}
	s.log.Info("HL7 connection closed", "addr", s.Addr(), "remote", cn.remote, "reason", reason, "messages", cn.messages)
}

// read feeds what arrives to the decoder and writes back the ACKs, until
// the connection fails, idles out or ctx ends; it returns why it ended.
func (cn *connection) read(ctx context.Context) string {
	buf := make([]byte, readBufferSize)
	for {
		if err := cn.c.SetReadDeadline(time.Now().Add(cn.s.idleTimeout)); err != nil {
			return cn.endReason(ctx, err)
		}
		n, err := cn.c.Read(buf)
		if n > 0 {
			cn.now = time.Now()
			cn.replies = cn.replies[:0]
			cn.dec.FeedMessages(buf[:n], cn.now, cn.handle)
			if len(cn.replies) > 0 {
				// A deadline error only means the write below fails too.
				_ = cn.c.SetWriteDeadline(cn.now.Add(writeTimeout))
				if _, werr := cn.c.Write(cn.replies); werr != nil {
					if ctx.Err() != nil {
						return reasonStopping
					}
					return "ACK write failed: " + werr.Error()
				}
			}
		}
		if err != nil {
			return cn.endReason(ctx, err)
		}
	}
}

func (cn *connection) endReason(ctx context.Context, err error) string {
	switch {
	case ctx.Err() != nil:
		return reasonStopping
	case errors.Is(err, io.EOF):
		return reasonClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no data for %v", cn.s.idleTimeout)
	}
	return "read failed: " + err.Error()
}

// handle is the decoder's callback for one message or framing problem.
func (cn *connection) handle(m *hl7.Message, err error) {
	if err != nil {
		cn.refused(m, err)
		return
	}
	s := cn.s
	dev := s.bySender[m.Sender]
	if dev == nil {
		s.rejected(RejectUnknownSender)
		level := slog.LevelDebug
		if s.logged.first("sender\x00" + m.Sender) {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "HL7 message from an unknown sender refused (AE); configure a device with this sender to read it",
			"sender", m.Sender, "control_id", m.ControlID, "remote", cn.remote, "addr", s.Addr())
		// The sender first: MSA-3 keeps 80 bytes.
		cn.ack(m, hl7.AE, fmt.Sprintf("unknown sender %q: no device is configured with this sender", m.Sender))
		return
	}
	cn.deliver(dev, m)
	cn.ack(m, hl7.AA, "")
}

// deliver hands m's readings, then its frame result, to dev's sink, and
// marks dev connected on the connection's first message for it.
func (cn *connection) deliver(dev *device, m *hl7.Message) {
	s := cn.s
	dev.mu.Lock()
	if !cn.spokeFor(dev) {
		cn.devices = append(cn.devices, dev)
		dev.conns++
		if dev.conns == 1 {
			s.log.Info("HL7 device connected", "device", dev.id, "sender", dev.sender, "remote", cn.remote)
			if s.onStatus != nil {
				s.onStatus(dev.id, true, cn.now, "")
			}
		}
	}
	for i := range m.Readings {
		dev.sink.Reading(m.Readings[i])
	}
	dev.sink.Frame(m.Result, 0)
	dev.mu.Unlock()
	cn.messages++
	s.log.Debug("HL7 message", "device", dev.id, "sender", m.Sender, "control_id", m.ControlID,
		"readings", len(m.Readings), "result", m.Result.String())

	for _, u := range m.Unknown {
		key := u.Key()
		if s.onUnknown != nil {
			s.onUnknown(key)
		}
		if s.logged.first("code\x00" + key) {
			// Code, label and unit only: the value is never looked at.
			s.log.Info("HL7 observation without a catalogue metric", "device", dev.id, "code", key,
				"label", u.Text, "unit", u.Unit, "value_type", u.ValueType, "recognised", u.Recognised)
		}
	}
}

func (cn *connection) spokeFor(dev *device) bool {
	for _, d := range cn.devices {
		if d == dev {
			return true
		}
	}
	return false
}

// owner is the one device this connection has carried messages for, or
// nil when it has carried none or several. Frames the decoder could not
// read on a connection that only ever spoke for one device are that
// device's bad frames (vigil_frames_total); on a gateway's shared
// connection they cannot be attributed.
func (cn *connection) owner() *device {
	if len(cn.devices) == 1 {
		return cn.devices[0]
	}
	return nil
}

// refused handles a message or byte run the decoder could not use.
func (cn *connection) refused(m *hl7.Message, err error) {
	s := cn.s
	var e *hl7.Error
	if !errors.As(err, &e) {
		e = &hl7.Error{Err: err}
	}
	reason := RejectParseError
	switch {
	case errors.Is(err, hl7.ErrGarbage), errors.Is(err, hl7.ErrTruncated), errors.Is(err, hl7.ErrOversize):
		reason = RejectFraming
	case e.AckCode() == hl7.AR:
		reason = RejectUnsupported
	}
	if dev := cn.owner(); dev != nil {
		dev.mu.Lock()
		dev.sink.Frame(drivers.FrameMalformed, e.Dropped)
		dev.mu.Unlock()
	}
	s.rejected(reason)

	// hl7.Error texts name positions and sentinels, never field content.
	level := slog.LevelDebug
	if s.logged.first("reject\x00" + e.Error()) {
		level = slog.LevelWarn
	}
	attrs := []any{"reason", reason, "err", e.Error(), "dropped_bytes", e.Dropped, "remote", cn.remote}
	if m != nil {
		attrs = append(attrs, "control_id", m.ControlID)
	}
	if reason == RejectFraming {
		s.log.Log(context.Background(), level, "HL7 bytes that are not a message skipped", attrs...)
		return // nothing to answer: no message was read
	}
	code := e.AckCode()
	attrs = append(attrs, "ack", string(code))
	s.log.Log(context.Background(), level, "HL7 message refused", attrs...)
	cn.ack(m, code, e.Error())
}

// lostBlock counts a message cut off by the end of its connection.
func (cn *connection) lostBlock() {
	s := cn.s
	if dev := cn.owner(); dev != nil {
		dev.mu.Lock()
		// The decoder does not say how many bytes it held.
		dev.sink.Frame(drivers.FrameMalformed, 0)
		dev.mu.Unlock()
	}
	s.rejected(RejectFraming)
	s.log.Warn("HL7 connection ended in the middle of a message; it is lost", "remote", cn.remote)
}

// ack queues the ACK of m (nil: a message whose header was unreadable,
// answered with an empty MSA-2) when the message asks for one
// (MSH-15/MSH-16, hl7.Message.WantsACK).
func (cn *connection) ack(m *hl7.Message, code hl7.AckCode, reason string) {
	if !m.WantsACK(code) {
		return
	}
	cn.replies = append(cn.replies, hl7.ACK(m, code, reason, cn.now)...)
}
