// Package contec is the driver for the live output of Contec CMS50D+,
// CMS50E, CMS50F and CMS60 pulse oximeters (protocols.md section 3). Two
// incompatible firmware generations exist: the legacy one streams 5-byte
// frames at 19200 8O1 by itself (protocols.md 3.2), firmware 4.6 and later
// sends 9-byte packets at 115200 8N1 once the host starts it and keeps it
// alive (protocols.md 3.3). Both give SpO2, pulse rate and a 60 Hz
// plethysmogram. See README.md for the cable, the options and what is
// confirmed, inferred or unverified.
package contec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Name is the driver's registry name, used in the config's `driver:` key.
const Name = "contec-cms50"

// OptionProtocol is the one driver option: which firmware generation the
// device has.
const OptionProtocol = "protocol"

// Protocol is a firmware generation's live protocol.
type Protocol uint8

const (
	// ProtocolAuto recognises the generation from the bytes (Decoder) and
	// lists both link settings to try (Variants).
	ProtocolAuto Protocol = iota
	// ProtocolLegacy is the 5-byte, one-way stream (protocols.md 3.2).
	ProtocolLegacy
	// ProtocolV46 is the 9-byte, host-driven stream of firmware 4.6+
	// (protocols.md 3.3).
	ProtocolV46
)

// protocolNames are the option values, indexed by Protocol.
var protocolNames = [...]string{
	ProtocolAuto:   "auto",
	ProtocolLegacy: "legacy",
	ProtocolV46:    "v46",
}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "unknown"
}

// Link settings of the two generations.
var (
	// LinkV46 is 115200 8N1 (protocols.md 3.3 [C]); the driver default,
	// because these devices never send anything until started, so a probe
	// at this setting is the one that needs the host (protocols.md 3.1).
	LinkV46 = drivers.Link{Baud: 115200, DataBits: 8, Parity: "none", StopBits: "1"}
	// LinkLegacy is 19200 8O1 (protocols.md 3.2 [C]). An older OEM variant
	// runs at 4800 8N1 [C: forum post]; set baud and parity in the config
	// for it (README "Link").
	LinkLegacy = drivers.Link{Baud: 19200, DataBits: 8, Parity: "odd", StopBits: "1"}
)

// ProbeTimeout is how long a link variant may stay without a valid frame
// before the next one is tried: protocols.md 3.1 suggests 2 s [I]. Both
// generations send 60 frames a second once running.
const ProbeTimeout = 2 * time.Second

// silentAfter: the device sends 60 frames a second (protocols.md 3.2, 3.3),
// so 3 s without one is about 180 lost frames, not jitter. It is shorter
// than the keep-alive period (TickEvery), so a v4.6 device that stopped
// streaming shows as silent before the next tick restarts it.
const silentAfter = 3 * time.Second

func init() {
	drivers.Register(&drivers.Driver{
		Name:        Name,
		Description: "Contec CMS50D+/CMS50E/CMS50F/CMS60 live stream (legacy 5-byte or firmware 4.6+ 9-byte): SpO2, pulse rate, pleth",
		Link:        LinkV46,
		Metrics:     []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.Pleth},
		NewDecoder: func(opts drivers.Options) (drivers.Decoder, error) {
			p, err := ParseOptions(opts)
			if err != nil {
				return nil, err
			}
			return NewDecoder(p), nil
		},
		NewEncoder: func(opts drivers.Options) (drivers.Encoder, error) {
			p, err := ParseOptions(opts)
			if err != nil {
				return nil, err
			}
			return NewEncoder(p), nil
		},
		Validate: func(opts drivers.Options) error {
			_, err := ParseOptions(opts)
			return err
		},
		// The SiLabs CP210x bridge in the cable (protocols.md 3.1 [C]). It is
		// the chip's generic id, shared by many unrelated gadgets: a match
		// says "maybe a Contec", never "a Contec" (protocols.md 7.4).
		USBIDs:       []string{"10c4:ea60"},
		SilentAfter:  silentAfter,
		Variants:     Variants,
		ProbeTimeout: ProbeTimeout,
	})
}

// OptionError reports a driver option contec-cms50 does not accept.
type OptionError struct {
	Key   string // the option's name
	Value any    // its value as the config gave it; nil for an unknown key
	// Unknown is set when the key itself is not an option of this driver.
	Unknown bool
}

func (e *OptionError) Error() string {
	allowed := strings.Join(protocolNames[:], ", ")
	if e.Unknown {
		return fmt.Sprintf("%s: unknown driver option %s: the only option is %q (%s)",
			Name, strconv.Quote(e.Key), OptionProtocol, allowed)
	}
	return fmt.Sprintf("%s: option %q is %s; allowed values: %s",
		Name, e.Key, describeValue(e.Value), allowed)
}

func describeValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v (%T, not a string)", v, v)
}

// ParseOptions checks the driver options and returns the protocol they
// select; no options mean ProtocolAuto. Errors are *OptionError.
func ParseOptions(opts drivers.Options) (Protocol, error) {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first offending key is the same on every run
	p := ProtocolAuto
	for _, k := range keys {
		if k != OptionProtocol {
			return 0, &OptionError{Key: k, Unknown: true}
		}
		s, ok := opts[k].(string)
		if !ok {
			return 0, &OptionError{Key: k, Value: opts[k]}
		}
		found := false
		for i, name := range protocolNames {
			if s == name {
				p, found = Protocol(i), true
				break
			}
		}
		if !found {
			return 0, &OptionError{Key: k, Value: s}
		}
	}
	return p, nil
}

// Variant is one way to talk to the device: a link setting and the driver
// options that build the decoder for it.
type Variant = drivers.LinkVariant

// Variants lists the link settings to try, in order, for opts: for auto the
// firmware 4.6+ setting first, then the legacy one (protocols.md 3.1 [I]);
// for a fixed protocol only its own. Each variant's Options fix the
// protocol, so its decoder never sends a v4.6 command to a legacy device.
// An agent tries the next variant when the current one gives no valid frame
// within ProbeTimeout (README "Auto-detection"). Config overrides of baud,
// parity etc. apply on top of each Link.
func Variants(opts drivers.Options) ([]Variant, error) {
	p, err := ParseOptions(opts)
	if err != nil {
		return nil, err
	}
	v46 := Variant{Link: LinkV46, Options: drivers.Options{OptionProtocol: ProtocolV46.String()}}
	legacy := Variant{Link: LinkLegacy, Options: drivers.Options{OptionProtocol: ProtocolLegacy.String()}}
	switch p {
	case ProtocolLegacy:
		return []Variant{legacy}, nil
	case ProtocolV46:
		return []Variant{v46}, nil
	}
	return []Variant{v46, legacy}, nil
}
