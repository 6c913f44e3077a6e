// Package drivers defines what a device driver is: a decoder from a device's
// byte stream to Readings, plus the link settings and the commands the device
// needs. Drivers know nothing of MQTT, Prometheus or alarms; each protocol
// family lives in its own sub-package and registers itself by name.
package drivers

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// FrameResult classifies one frame (a line, a packet) as the decoder saw it.
// These are the `result` label values of vigil_frames_total.
type FrameResult uint8

const (
	FrameOK           FrameResult = iota // decoded
	FrameChecksum                        // failed its checksum
	FrameMalformed                       // bytes that are not a frame: garbage, truncation, overlong
	FrameInvalidValue                    // framed correctly, but a value is outside its possible range
	frameResultCount
)

func (r FrameResult) String() string {
	switch r {
	case FrameOK:
		return "ok"
	case FrameChecksum:
		return "checksum"
	case FrameMalformed:
		return "malformed"
	case FrameInvalidValue:
		return "invalid_value"
	}
	return "unknown"
}

// FrameResults lists every FrameResult, for pre-creating metric series.
func FrameResults() []FrameResult {
	return []FrameResult{FrameOK, FrameChecksum, FrameMalformed, FrameInvalidValue}
}

// Sink receives what a decoder finds. Calls happen on the decoder's goroutine,
// in stream order; a Sink must not retain r.Samples' backing array beyond the
// call unless the driver says it gives ownership (all drivers do: see Reading).
type Sink interface {
	Reading(r Reading)
	// Frame reports one frame's outcome. dropped counts bytes discarded while
	// resynchronising (0 for a clean frame).
	Frame(result FrameResult, dropped int)
}

// Decoder turns a byte stream into readings. It keeps partial frames between
// calls; one Decoder serves one connection and is not safe for concurrent use.
type Decoder interface {
	// Feed consumes p, read at time now, and reports every complete frame to
	// sink. It never fails: bad bytes are counted and skipped.
	Feed(p []byte, now time.Time, sink Sink)
}

// Link is the serial line setting a device needs.
type Link struct {
	Baud     int
	DataBits int    // 5-8
	Parity   string // none, odd, even, mark, space
	StopBits string // "1", "1.5", "2"
}

// Conversation is implemented by decoders of devices that must be talked to:
// a start command after connecting, a periodic keep-alive. The agent calls
// Start once per connection before reading and Tick every TickEvery.
type Conversation interface {
	Start(w io.Writer, now time.Time) error
	Tick(w io.Writer, now time.Time) error
	TickEvery() time.Duration
}

// Advancer is implemented by conversations whose timers can end in readings
// (an NIBP measurement that times out yields readings without a value). When
// a decoder has it, the agent calls Advance instead of Tick.
type Advancer interface {
	Advance(w io.Writer, now time.Time, sink Sink) error
}

// Commander is implemented by decoders of devices that act on request, such
// as an NIBP monitor starting a cuff measurement. The agent calls Command from
// its own goroutine, serialized with Feed and Tick, with the connection's
// writer. Commands are named in lower case ("nibp_start"); an unknown one
// returns ErrUnknownCommand.
type Commander interface {
	Command(name string, w io.Writer, now time.Time) error
	Commands() []string
}

// ErrUnknownCommand is returned by Commander.Command for a command the
// device does not take.
var ErrUnknownCommand = errors.New("unknown command")

// Options are driver-specific device settings from the config (protocol,
// nibp, ...). Unknown keys are rejected by the driver's Validate.
type Options map[string]any

// Transport says how a driver's bytes arrive.
type Transport uint8

const (
	// Serial devices are opened by port path or USB identity.
	Serial Transport = iota
	// TCPListen devices connect to the agent: it listens on the device's
	// `listen` option and tells senders apart by the `sender` option (HL7
	// monitors pushing over MLLP).
	TCPListen
)

// LinkVariant is one way to open a device: its link settings and the driver
// options its decoder is built with for that link.
type LinkVariant struct {
	Link    Link
	Options Options
}

// Replier is implemented by decoders that answer what they decode (HL7 ACKs):
// after each Feed the agent sends whatever TakeReplies appends to dst.
type Replier interface {
	TakeReplies(dst []byte) []byte
}

// Driver is a registered protocol.
type Driver struct {
	Name        string // registry name used in the config, e.g. "masimo-ascii"
	Description string // one line, for `vigil devices` and docs
	Transport   Transport
	Link        Link // default serial settings
	// Metrics lists what the driver can report, so the agent can pre-create
	// metric series and detect silence.
	Metrics []MetricID
	// NewDecoder makes a decoder for one connection.
	NewDecoder func(opts Options) (Decoder, error)
	// NewEncoder makes the simulator's encoder: it renders readings as the
	// device would send them. nil when the driver has no simulator.
	NewEncoder func(opts Options) (Encoder, error)
	// NewResponder, for devices that answer the host (an NIBP module), makes
	// the simulator's device: it is told the scenario's values and answers
	// what the host writes. nil for devices that simply stream.
	NewResponder func(opts Options) (Responder, error)
	// Validate checks driver options at config load; nil accepts none.
	Validate func(opts Options) error
	// USBIDs are USB vendor:product ids (lower-case hex "0403:6001") of cables
	// or devices known to carry this protocol; informational, for `vigil devices`.
	USBIDs []string
	// SilentAfter is how long without a frame means the device went silent.
	SilentAfter time.Duration
	// Variants, when set, lists link settings to try in turn for a device
	// whose variant is not configured (Contec "auto"): the agent opens the
	// port with the first, and moves on to the next when no well-formed
	// frame arrives within ProbeTimeout. Config overrides (baud, parity, ...)
	// apply on top of each variant's Link.
	Variants     func(opts Options) ([]LinkVariant, error)
	ProbeTimeout time.Duration
}

// Frame is one simulated device output unit: the readings it carries.
// Values use the device's no-value form where a reading is not Valid.
type Frame struct {
	Time     time.Time
	Values   map[MetricID]float64 // missing key = device shows "no value"
	Flags    Flags
	Samples  []float64 // waveform batch, for drivers with a waveform
	DeviceSN string
}

// Encoder renders frames as the device's own bytes, for the simulator and tests.
type Encoder interface {
	// Encode appends the bytes of one frame to dst.
	Encode(dst []byte, f Frame) []byte
	// Interval is the time between frames the real device sends.
	Interval() time.Duration
}

// Responder plays a device that answers its host, for the simulator.
type Responder interface {
	// SetFrame gives the values the device would measure now.
	SetFrame(f Frame)
	// Exchange takes what the host wrote (nil for nothing) at time now and
	// returns what the device sends, including anything it says unasked.
	Exchange(host []byte, now time.Time) []byte
}

var (
	registryMu sync.RWMutex
	registry   = map[string]*Driver{}
)

// Register adds a driver; it panics on a duplicate name, as that is a
// programming error caught by any test.
func Register(d *Driver) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if d.Name == "" || d.NewDecoder == nil {
		panic("drivers: Register needs a name and NewDecoder")
	}
	if _, dup := registry[d.Name]; dup {
		panic(fmt.Sprintf("drivers: %q registered twice", d.Name))
	}
	registry[d.Name] = d
}

// Lookup returns the registered driver called name.
func Lookup(name string) (*Driver, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	d, ok := registry[name]
	return d, ok
}

// Names lists the registered drivers, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
