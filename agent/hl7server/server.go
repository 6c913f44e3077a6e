// Package hl7server is the agent's MLLP listener for patient monitors that
// push HL7 v2 ORU^R01 messages over TCP (protocols.md 5.2; driver
// drivers/hl7, registry name hl7-mllp). The monitor connects to the agent;
// one listen address may serve several monitors, told apart by the sender
// each message names (hl7.Message.Sender: OBX-18, else MSH-4, else MSH-3).
//
// For every message the server hands the readings to the configured
// device's drivers.Sink, then answers on the same connection with the ACK
// the message asks for (hl7.ACK): AA when read, AE for an unknown sender or
// a message it cannot parse, AR for a message type it does not read. The
// ACK is written only after the readings went to the sink, so a monitor
// that sees AA knows its values were taken.
//
// Privacy: nothing from a message's content is logged. Logs name sender
// ids, control ids, observation codes and the hl7 package's error texts,
// which name positions, never values (drivers/hl7 README "Privacy").
package hl7server

import (
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

// Device is one configured monitor on the listen address.
type Device struct {
	ID     string // configured device id, for logs and OnStatus
	Sender string // hl7.Message.Sender of the monitor's messages (the `sender` option)
	// Sink is the device's pipeline: its readings, then one Frame per
	// message. Calls for one device are serialized across connections.
	Sink drivers.Sink
}

// Options configure a Server.
type Options struct {
	Listen  string   // host:port; ":0" picks a free port (see Addr)
	Devices []Device // the configured devices on this listen address
	// OnStatus is told when a device becomes connected (a connection
	// delivered its first message from the device's sender) and when it
	// stops being connected (the last such connection closed; reason says
	// why). Calls for one device are serialized and never overlap its Sink
	// calls; it must not call back into the Server.
	OnStatus func(deviceID string, connected bool, now time.Time, reason string)
	// OnUnknownCode is called for every observation of a routed message
	// that has no catalogue metric, with its hl7.UnknownObservation.Key
	// ("MDC:150344"), for the agent to count. The server logs each code
	// once. Called concurrently from connection goroutines.
	OnUnknownCode func(code string)
	// OnRejected is called for every message refused (and every run of
	// bytes that is not a message), with one of the Reject* reasons, for
	// the agent to count. Called concurrently from connection goroutines.
	OnRejected func(reason string)
	Logger     *slog.Logger // nil uses slog.Default()
	// MaxConns bounds open connections; more are accepted and closed at
	// once. 0 means DefaultMaxConns.
	MaxConns int
	// IdleTimeout closes a connection that sent no byte for this long. 0
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Reasons given to Options.OnRejected: a fixed set, usable as metric label
// values.
const (
	// RejectUnknownSender: a well-formed message from a sender no
	// configured device has (answered AE).
	RejectUnknownSender = "unknown_sender"
	// RejectParseError: a message that could not be read (answered AE).
	RejectParseError = "parse_error"
	// RejectUnsupported: a message type other than ORU^R01, such as
	// Edan's QRY^R02 answer (answered AR).
	RejectUnsupported = "unsupported_type"
	// RejectFraming: bytes outside an MLLP block, a block cut short or one
	// longer than hl7.MaxMessageSize (no ACK: there is no message to
	// answer).
	RejectFraming = "framing"
)

// RejectReasons lists every reason OnRejected can be called with, for
// pre-creating metric series.
func RejectReasons() []string {
	return []string{RejectUnknownSender, RejectParseError, RejectUnsupported, RejectFraming}
}

const (
	// DefaultMaxConns: a treatment room has a monitor or two, each holding
	// one connection (plus one while it reconnects); 16 leaves room for a
	// gateway while bounding what a misbehaving host can open.
	DefaultMaxConns = 16
	// DefaultIdleTimeout: monitors push every few seconds (the drivers/hl7
	// README asks for 10 s or less). A connection silent for 5 minutes is
	// a peer that vanished without closing (cable pulled, monitor off);
	// the device's silence is reported long before, by the agent's
	// watchdog (hl7-mllp SilentAfter 30 s).
	DefaultIdleTimeout = 5 * time.Minute
	// writeTimeout bounds one write of ACKs. An ACK is a few hundred bytes;
	// a peer that has not taken them in 10 s is not reading, and the
	// connection is closed rather than left to block its goroutine.
	writeTimeout = 10 * time.Second
	// readBufferSize is what one Read takes: a vital-signs push is a few
	// kilobytes (protocols.md 5.2).
	readBufferSize = 32 << 10
	// refusedLogEvery throttles the log of connections refused over
	// MaxConns: a monitor retrying every second would otherwise fill it.
	refusedLogEvery = 10 * time.Second
	// maxLoggedKeys bounds the once-only log memory (unknown codes, unknown
	// senders, rejection causes), so a sender inventing ids cannot grow it.
	maxLoggedKeys = 1024
)

// Errors callers can branch on.
var (
	// ErrOptions wraps every problem with Options found by Listen.
	ErrOptions = errors.New("hl7server: invalid options")
	// ErrServerClosed is returned by Serve after Close, and by Serve on a
	// Server already served or closed.
	ErrServerClosed = errors.New("hl7server: server closed")
)

// Server accepts monitor connections on one listen address.
type Server struct {
	ln          net.Listener
	log         *slog.Logger
	byID        map[string]*device
	bySender    map[string]*device
	onStatus    func(string, bool, time.Time, string)
	onUnknown   func(string)
	onRejected  func(string)
	maxConns    int
	idleTimeout time.Duration
	logged      onceLog

	active atomic.Int64 // open connections

	mu       sync.Mutex
	served   bool
	closed   bool
	stopConn context.CancelFunc // ends Serve's connections; set while Serve runs

	refusedMu      sync.Mutex
	refusedSince   int
	refusedLogTime time.Time
}

// device is one configured device and what serializes its Sink.
type device struct {
	id     string
	sender string

	mu    sync.Mutex // serializes sink and OnStatus calls; guards conns
	sink  drivers.Sink
	conns int // open connections that delivered a message from sender
}

// Listen checks o and binds the listen address, so that a taken port fails
// at start. The server accepts nothing until Serve.
func Listen(o Options) (*Server, error) {
	s := &Server{
		log:         o.Logger,
		byID:        make(map[string]*device, len(o.Devices)),
		bySender:    make(map[string]*device, len(o.Devices)),
		onStatus:    o.OnStatus,
		onUnknown:   o.OnUnknownCode,
		onRejected:  o.OnRejected,
		maxConns:    o.MaxConns,
		idleTimeout: o.IdleTimeout,
		logged:      onceLog{max: maxLoggedKeys},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxConns == 0 {
		s.maxConns = DefaultMaxConns
	}
	if s.idleTimeout == 0 {
		s.idleTimeout = DefaultIdleTimeout
	}
	var errs []error
	if o.Listen == "" {
		errs = append(errs, errors.New("no listen address"))
	}
	if s.maxConns < 0 {
		errs = append(errs, fmt.Errorf("max connections %d is negative", o.MaxConns))
	}
	if s.idleTimeout < 0 {
		errs = append(errs, fmt.Errorf("idle timeout %v is negative", o.IdleTimeout))
	}
	if len(o.Devices) == 0 {
		errs = append(errs, errors.New("no devices"))
	}
	for i, d := range o.Devices {
		switch {
		case d.ID == "":
			errs = append(errs, fmt.Errorf("device %d has no id", i+1))
			continue
		case d.Sender == "":
			errs = append(errs, fmt.Errorf("device %s has no sender", d.ID))
			continue
		case d.Sink == nil:
			errs = append(errs, fmt.Errorf("device %s has no sink", d.ID))
			continue
		}
		if _, dup := s.byID[d.ID]; dup {
			errs = append(errs, fmt.Errorf("device id %s is configured twice", d.ID))
			continue
		}
		if other, dup := s.bySender[d.Sender]; dup {
			// Two devices cannot share a sender: the messages could not be
			// told apart.
			errs = append(errs, fmt.Errorf("devices %s and %s both have sender %q on %s", other.id, d.ID, d.Sender, o.Listen))
			continue
		}
		dev := &device{id: d.ID, sender: d.Sender, sink: d.Sink}
		s.byID[d.ID] = dev
		s.bySender[d.Sender] = dev
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrOptions, errors.Join(errs...))
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("hl7server: %w", err)
	}
	s.ln = ln
	return s, nil
}

// Addr is the bound address, host:port (with the port chosen for ":0").
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close closes the listener and, while Serve runs, every connection; Serve
// then returns ErrServerClosed. It releases the port of a Server that is
// never served.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stop := s.stopConn
	s.mu.Unlock()
	err := s.ln.Close()
	if stop != nil {
		stop()
	}
	return err
}

// Serve accepts connections until ctx ends, each served on its own
// goroutine, and returns nil once the listener and every connection are
// closed and those goroutines have ended. Every device still connected is
// reported disconnected ("agent stopping"). Serve runs once per Server.
func (s *Server) Serve(ctx context.Context) error {
	connCtx, stopConns := context.WithCancel(ctx)
	defer stopConns()
	s.mu.Lock()
	if s.served || s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.served = true
	s.stopConn = stopConns
	s.mu.Unlock()

	stopListening := context.AfterFunc(ctx, func() { _ = s.ln.Close() })
	defer stopListening()

	var wg sync.WaitGroup
	defer wg.Wait() // after stopConns: connections close, then they are waited for
	defer stopConns()

	s.log.Info("HL7 listener ready", "addr", s.Addr(), "devices", len(s.byID))
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			// Out of file descriptors and the like: wait and accept
			// again, as a transient error must not stop the listener.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("HL7 accept failed; retrying", "addr", s.Addr(), "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if s.active.Load() >= int64(s.maxConns) {
			s.refuse(c)
			continue
		}
		s.active.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.active.Add(-1)
			s.serveConn(connCtx, c)
		}()
	}
}

// refuse closes a connection over MaxConns, logging at most once per
// refusedLogEvery with the count since the last log.
func (s *Server) refuse(c net.Conn) {
	remote := c.RemoteAddr().String()
	_ = c.Close()
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	s.refusedSince++
	now := time.Now()
	if now.Sub(s.refusedLogTime) < refusedLogEvery {
		return
	}
	s.log.Warn("HL7 connection refused: too many connections", "addr", s.Addr(), "remote", remote,
		"max_conns", s.maxConns, "refused_since_last_log", s.refusedSince)
	s.refusedSince = 0
	s.refusedLogTime = now
}

// rejected reports one refusal to the agent.
func (s *Server) rejected(reason string) {
	if s.onRejected != nil {
		s.onRejected(reason)
	}
}

// onceLog remembers which keys were logged, up to max keys; past that,
// every key counts as logged (the agent's counters still see them).
type onceLog struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

// first reports whether key was not seen before, and remembers it.
func (o *onceLog) first(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.seen[key]; ok || len(o.seen) >= o.max {
		return false
	}
	if o.seen == nil {
		o.seen = make(map[string]struct{})
	}
	o.seen[key] = struct{}{}
	return true
}
