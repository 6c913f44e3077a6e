// Package suntech is the driver for the SunTech Medical Advantage and
// Advantage Mini OEM NIBP modules (protocols.md 4.1). The module speaks only
// when spoken to: the host starts a measurement, polls the cuff pressure
// until the module says it is done, then fetches the result. The Decoder
// therefore also drives that conversation (drivers.Conversation) and takes
// the "nibp_start" and "nibp_abort" commands (drivers.Commander). Module is
// an emulator of the module for tests and the simulator. See README.md for
// the link, the timing decisions and what is confirmed, inferred or
// unverified.
package suntech

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Name is the driver's registry name, used in the config's `driver:` key.
const Name = "suntech-advantage"

// OptionPatient is the one driver option: which start command to send
// (protocols.md 4.1: 0x20 adult, 0x87 pediatric, 0x28 neonatal). Default
// "adult": Vigil monitors adults in ketamine sessions (clinical.md 3).
const OptionPatient = "patient"

// silentAfter: an idle module is probed every IdleProbeEvery (5 s) and
// polled every PollEvery while measuring, so 15 s without a frame is three
// unanswered probes, not a quiet module.
const silentAfter = 3 * IdleProbeEvery

func init() {
	drivers.Register(&drivers.Driver{
		Name:        Name,
		Description: "SunTech Advantage / Advantage Mini OEM NIBP module (host-driven): systolic, diastolic, mean, pulse rate",
		// 9600 8N1 (protocols.md 4.1 [C: ak-git and nPM]).
		Link:    drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"},
		Metrics: []drivers.MetricID{drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate, drivers.NIBPCuffPressure},
		NewDecoder: func(opts drivers.Options) (drivers.Decoder, error) {
			p, err := parseOptions(opts)
			if err != nil {
				return nil, err
			}
			return NewDecoder(p), nil
		},
		NewEncoder: func(opts drivers.Options) (drivers.Encoder, error) {
			if _, err := parseOptions(opts); err != nil {
				return nil, err
			}
			return Encoder{}, nil
		},
		// `vigil simulate suntech-advantage` plays a module that answers
		// the agent's start, poll and fetch commands.
		NewResponder: func(opts drivers.Options) (drivers.Responder, error) {
			if _, err := parseOptions(opts); err != nil {
				return nil, err
			}
			return &Module{}, nil
		},
		Validate: func(opts drivers.Options) error {
			_, err := parseOptions(opts)
			return err
		},
		// None: the module is a board behind TTL or RS-232, reached through
		// whatever USB-serial cable the site uses (protocols.md 7.4).
		USBIDs:      nil,
		SilentAfter: silentAfter,
	})
}

// OptionError reports a driver option suntech-advantage does not take, or
// a value it cannot use.
type OptionError struct {
	Key    string // the offending option name
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("%s: option %q: %s", Name, e.Key, e.Reason)
}

// parseOptions reads the options; the only key is "patient".
func parseOptions(opts drivers.Options) (Patient, error) {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	p := PatientAdult
	for _, k := range keys {
		if k != OptionPatient {
			return 0, &OptionError{Key: k, Reason: "unknown option; the only option is " + strconv.Quote(OptionPatient) +
				" (serial settings go in baud, data_bits, parity and stop_bits)"}
		}
		s, ok := opts[k].(string)
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "adult":
			p = PatientAdult
		case "pediatric":
			p = PatientPediatric
		case "neonatal":
			p = PatientNeonatal
		default:
			ok = false
		}
		if !ok {
			return 0, &OptionError{Key: k, Reason: fmt.Sprintf("is %v, want one of adult, pediatric, neonatal", opts[k])}
		}
	}
	return p, nil
}

// interval is the simulator's pace for results; see Encoder.Interval.
const interval = 10 * time.Second
