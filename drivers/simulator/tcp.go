package simulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// ErrNotMLLP is returned by NewTCPSender for a driver whose encoder does not
// render MLLP blocks: only MLLP-framed protocols travel over TCP to the agent.
var ErrNotMLLP = errors.New("simulator: encoder does not render MLLP-framed messages")

// MLLP block bytes (protocols.md 5.2): 0x0B <message> 0x1C 0x0D.
const (
	mllpStart = 0x0B
	mllpEnd   = 0x1C
	mllpCR    = 0x0D
)

const (
	// redialInterval is how often the sender tries again while the agent
	// is not listening, as a monitor retries its configured HL7 server.
	redialInterval = time.Second
	// dialTimeout bounds one connection attempt, so an address that does
	// not answer (no RST) delays playback by at most this much; the pacing
	// loop then skips what it cannot catch up on.
	dialTimeout = time.Second
	// tcpWriteTimeout bounds one write. An agent that takes nothing for
	// this long is stuck; the connection is dropped and made again, as a
	// monitor does when its HL7 server stops answering.
	tcpWriteTimeout = 2 * time.Second
	// maxACKSize bounds the ACK block kept while it arrives; an ACK is a
	// few hundred bytes (drivers/hl7 ack.go).
	maxACKSize = 64 << 10
)

// TCPOptions configure a simulated network monitor: it connects to the
// agent and pushes its frames, as HL7 monitors do (protocols.md 5.2).
type TCPOptions struct {
	// Driver's NewEncoder must render MLLP-framed messages (hl7-mllp).
	Driver        *drivers.Driver
	DriverOptions drivers.Options // passed to NewEncoder; for hl7-mllp, `sender` names the monitor
	Scenario      *Scenario
	// Rate is frames per second; 0 uses the encoder's Interval.
	Rate float64
	// Speed plays the scenario faster (or slower) than real time, as in
	// Options; 0 means 1.
	Speed float64
	// Seed makes the noise reproducible, as in Options.
	Seed uint64
	// Addr is the agent's host:port to connect to.
	Addr   string
	Logger *slog.Logger // nil discards
}

// TCPSender is a simulated monitor that connects to the agent over TCP and
// sends one encoded frame per interval, following the scenario as Device
// does on a pty. While the agent is not listening it tries again every
// second (frames due meanwhile are counted Discarded, as a monitor's
// unsent pushes are lost); after a lost connection it connects again. An
// unplug step closes the connection for the step. What the agent answers
// is read and counted by ACK code (Acks).
type TCPSender struct {
	log          *slog.Logger
	enc          drivers.Encoder
	pacing       pacing
	addr         string
	garbageDelim []byte

	running atomic.Bool

	frames, discarded, skipped, bytes, unplugs atomic.Uint64
	aa, ae, ar                                 atomic.Int64
}

// NewTCPSender checks the options. Nothing is connected until Run.
func NewTCPSender(o TCPOptions) (*TCPSender, error) {
	if err := checkPlayback(o.Driver, o.Scenario, o.Rate, o.Speed); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return nil, fmt.Errorf("simulator: address %q: %w", o.Addr, err)
	}
	enc, err := newEncoder(o.Driver, o.DriverOptions)
	if err != nil {
		return nil, err
	}
	// The sample comes from an encoder of its own, so the one that plays
	// starts its message counter (the HL7 control id) at the first frame.
	probe, err := newEncoder(o.Driver, o.DriverOptions)
	if err != nil {
		return nil, err
	}
	sample := probe.Encode(nil, drivers.Frame{Time: time.Now(), Values: map[drivers.MetricID]float64{}})
	if len(sample) < 3 || sample[0] != mllpStart || !bytes.HasSuffix(sample, []byte{mllpEnd, mllpCR}) {
		return nil, fmt.Errorf("%w: %s", ErrNotMLLP, o.Driver.Name)
	}
	pc, err := newPacing(o.Driver, enc, o.Scenario, o.Rate, o.Speed, o.Seed)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TCPSender{
		log:          log.With("scenario", o.Scenario.Name, "addr", o.Addr),
		enc:          enc,
		pacing:       pc,
		addr:         o.Addr,
		garbageDelim: frameDelimiter(sample),
	}, nil
}

// Stats returns the sender's counters: Frames written to a connection,
// Discarded while not connected or in a failed write, Skipped when the
// player fell behind, Bytes written, Unplugs (unplug steps played).
func (s *TCPSender) Stats() Stats {
	return Stats{
		Frames:    s.frames.Load(),
		Discarded: s.discarded.Load(),
		Skipped:   s.skipped.Load(),
		Bytes:     s.bytes.Load(),
		Unplugs:   s.unplugs.Load(),
	}
}

// Acks counts the acknowledgements received, by MSA-1 code.
func (s *TCPSender) Acks() (aa, ae, ar int) {
	return int(s.aa.Load()), int(s.ae.Load()), int(s.ar.Load())
}

// tcpLink is one connection to the agent and its ACK reader.
type tcpLink struct {
	conn net.Conn
	done chan struct{} // closed when the reader stops: the connection is gone
	once sync.Once
}

func (l *tcpLink) close() {
	l.once.Do(func() { _ = l.conn.Close() })
}

// Run plays the scenario from its start until ctx ends or a scenario that
// does not loop ends, and returns nil; the connection is closed and its
// reader stopped before it returns. One Run at a time (ErrRunning).
func (s *TCPSender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)

	var readers sync.WaitGroup
	var link *tcpLink
	defer func() {
		if link != nil {
			link.close()
		}
		readers.Wait()
	}()
	drop := func(why string, err error) {
		s.log.Info(why, "err", err)
		link.close()
		link = nil
	}

	pl := s.pacing.start()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var nextDial time.Time // zero: at once
	dialFailures := 0
	buf := make([]byte, 0, 4096)
	for {
		elapsed, m, entered := pl.look()
		if m.Ended {
			s.log.Info("scenario ended")
			return nil
		}
		if entered {
			s.log.Info("scenario step", "step", m.Step+1, "name", m.StepName, "pass", m.Pass+1)
			if m.Unplug {
				s.unplugs.Add(1)
			}
		}
		switch {
		case m.Unplug && link != nil:
			drop("device unplugged: connection closed", nil)
		case !m.Unplug && link == nil && !time.Now().Before(nextDial):
			conn, err := (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, "tcp", s.addr)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				dialFailures++
				if dialFailures == 1 {
					s.log.Warn("agent not reachable; trying again every second", "err", err)
				}
				nextDial = time.Now().Add(redialInterval)
				break
			}
			s.log.Info("connected to the agent", "local", conn.LocalAddr().String(), "failed_attempts", dialFailures)
			dialFailures = 0
			link = &tcpLink{conn: conn, done: make(chan struct{})}
			readers.Add(1)
			go func(l *tcpLink) {
				defer readers.Done()
				defer close(l.done)
				s.readACKs(l.conn)
			}(link)
		}

		buf = buf[:0]
		n, skipped := pl.render(elapsed, func(f drivers.Frame, garbage int) {
			buf = pl.appendFrame(buf, s.enc, f, garbage, s.garbageDelim)
		})
		s.skipped.Add(skipped)
		if n > 0 {
			if link == nil {
				s.discarded.Add(n)
			} else {
				_ = link.conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
				w, err := link.conn.Write(buf)
				s.bytes.Add(uint64(w))
				if err != nil {
					s.discarded.Add(n)
					drop("connection to the agent lost", err)
					nextDial = time.Time{}
				} else {
					s.frames.Add(n)
				}
			}
		}

		wake := pl.wake(elapsed)
		if link == nil && !m.Unplug {
			if wd := nextDial.Sub(pl.startedAt); wd < wake {
				wake = wd
			}
		}
		timer.Reset(wake - time.Since(pl.startedAt))
		var lost <-chan struct{}
		if link != nil {
			lost = link.done
		}
		select {
		case <-ctx.Done():
			return nil
		case <-lost:
			drop("connection closed by the agent", nil)
			nextDial = time.Time{}
		case <-timer.C:
		}
	}
}

// readACKs reads the agent's answers until the connection fails or is
// closed, counting each MLLP block by its MSA-1 code.
func (s *TCPSender) readACKs(conn net.Conn) {
	var sc ackScanner
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		sc.feed(buf[:n], s.countACK)
		if err != nil {
			return
		}
	}
}

func (s *TCPSender) countACK(code string) {
	switch code {
	case "AA":
		s.aa.Add(1)
	case "AE":
		s.ae.Add(1)
	case "AR":
		s.ar.Add(1)
	default:
		s.log.Debug("answer without an original-mode ACK code", "code", code)
	}
}

// ackScanner finds MLLP blocks in what the agent sends and reads MSA-1
// from each (HL7 v2 original-mode acknowledgement, protocols.md 5.2).
type ackScanner struct {
	in    bool
	block []byte
}

func (a *ackScanner) feed(p []byte, fn func(code string)) {
	for _, c := range p {
		switch {
		case c == mllpStart:
			a.in = true
			a.block = a.block[:0]
		case !a.in:
			// The CR after a block, or bytes that are not an answer.
		case c == mllpEnd:
			a.in = false
			fn(msaCode(a.block))
		case len(a.block) < maxACKSize:
			a.block = append(a.block, c)
		default:
			a.in = false // an overlong block is not an ACK
		}
	}
}

// msaCode is MSA-1 of an HL7 message, "" when it has no MSA segment. The
// field separator is the one MSH-1 declares.
func msaCode(msg []byte) string {
	if len(msg) < 4 || !bytes.HasPrefix(msg, []byte("MSH")) {
		return ""
	}
	sep := msg[3]
	for seg := range bytes.SplitSeq(msg, []byte{mllpCR}) {
		seg = bytes.TrimLeft(seg, "\n")
		if len(seg) > 4 && bytes.HasPrefix(seg, []byte("MSA")) && seg[3] == sep {
			code, _, _ := bytes.Cut(seg[4:], []byte{sep})
			return string(code)
		}
	}
	return ""
}
