// Package masimo is the driver for the "ASCII 1" serial text output of
// Masimo pulse oximeters: Rad-8, Rad-87, Radical-7, Rad-97 and Root
// (protocols.md section 2). The device streams one line per second by
// itself; the host never sends anything. See README.md for the cable, the
// device setting and what is confirmed, inferred or unverified.
package masimo

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Name is the driver's registry name, used in the config's `driver:` key.
const Name = "masimo-ascii"

// silentAfter: the device prints one line per second (protocols.md 2.1), so
// five seconds without a line is five lost lines, not jitter.
const silentAfter = 5 * time.Second

func init() {
	drivers.Register(&drivers.Driver{
		Name:        Name,
		Description: "Masimo Rad-8/Rad-87/Radical-7/Rad-97/Root serial \"ASCII 1\" text: SpO2, pulse rate, perfusion index",
		// 9600 8N1, no handshake (protocols.md 2.1 [C]).
		Link:    drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"},
		Metrics: []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex},
		NewDecoder: func(opts drivers.Options) (drivers.Decoder, error) {
			if err := validate(opts); err != nil {
				return nil, err
			}
			return NewDecoder(), nil
		},
		NewEncoder: func(opts drivers.Options) (drivers.Encoder, error) {
			if err := validate(opts); err != nil {
				return nil, err
			}
			return Encoder{}, nil
		},
		Validate: validate,
		// None: the device has no USB function; it is reached through
		// whatever USB-RS232 cable the site uses, so the driver must be
		// configured, never guessed from a USB id (protocols.md 2.1, 7.4).
		USBIDs:      nil,
		SilentAfter: silentAfter,
	})
}

// OptionError reports driver options given to masimo-ascii, which takes
// none: everything about the device is fixed by its "ASCII 1" setting.
type OptionError struct {
	Keys []string // the offending option names, sorted
}

func (e *OptionError) Error() string {
	quoted := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		quoted[i] = strconv.Quote(k)
	}
	return Name + " takes no driver options, but the device has " + strings.Join(quoted, ", ") +
		": remove them (serial settings go in baud, data_bits, parity and stop_bits)"
}

func validate(opts drivers.Options) error {
	if len(opts) == 0 {
		return nil
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return &OptionError{Keys: keys}
}
