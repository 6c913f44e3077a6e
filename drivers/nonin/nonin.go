// Package nonin holds the drivers for Nonin pulse oximeters (protocols.md
// section 1): the binary serial Data Formats #2 and #7 (5-byte frames at
// 75 Hz in 25-frame packets, with a pleth waveform) and #8 (4 bytes a
// second), and the ASCII real-time line of the tabletop and handheld models.
// Each format is its own registered driver. Devices that choose their format
// by command (WristOx2 3150, Onyx II 9560) can be sent the set-format command
// on connect with the set_format option. See README.md.
package nonin

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Registry names.
const (
	NameDF2   = "nonin-df2"
	NameDF7   = "nonin-df7"
	NameDF8   = "nonin-df8"
	NameASCII = "nonin-ascii"
)

// OptionSetFormat is the device option that makes the decoder send the
// set-format command when the agent connects: false (the default), true or
// "long" for SetFormatLong, "short" for SetFormatShort.
const OptionSetFormat = "set_format"

// link is the serial setting of every Nonin format: 9600 8N1, no flow
// control (protocols.md 1.1 [C]). The ASCII models send 9 data bits whose
// 9th is always mark, or 8 data bits and 2 stop bits (protocols.md 1.6); the
// manuals say to read that as 8 data bits, no parity: the extra mark bit is
// seen as idle line (an extra stop bit), so 8N1 reads every variant.
var link = drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}

// Silence limits. DF2/DF7 send 3 packets a second: 3 s without one is 9
// lost packets (mdpnp's Nonin adapter uses the same 3 s "maximum quiet
// time"). DF8 and ASCII send once a second: 5 s is 5 lost frames, as for the
// masimo driver.
const (
	silentAfterPackets = 3 * time.Second
	silentAfterSeconds = 5 * time.Second
)

func init() {
	drivers.Register(&drivers.Driver{
		Name:        NameDF2,
		Description: "Nonin Data Format #2 (OEM III, Xpod 3012): SpO2, pulse rate, 8-bit pleth at 75 Hz",
		Link:        link,
		Metrics:     []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.Pleth},
		NewDecoder:  newDecoderFunc(NameDF2, DF2, func() drivers.Decoder { return NewDF2Decoder() }),
		NewEncoder:  newEncoderFunc(NameDF2, true, NewDF2Encoder()),
		Validate:    validateFunc(NameDF2, true),
		// None: protocols.md 1.1 gives the Xpod's USB manufacturer string
		// ("Nonin Medical") but marks its VID:PID unconfirmed [U]; the usual
		// FTDI 0403:6001 would match any FTDI cable.
		USBIDs:      nil,
		SilentAfter: silentAfterPackets,
	})
	drivers.Register(&drivers.Driver{
		Name:        NameDF7,
		Description: "Nonin Data Format #7 (WristOx2 3150, Onyx II 9560): SpO2, pulse rate, 16-bit pleth at 75 Hz",
		Link:        link,
		Metrics:     []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.Pleth},
		NewDecoder:  newDecoderFunc(NameDF7, DF7, func() drivers.Decoder { return NewDF7Decoder() }),
		NewEncoder:  newEncoderFunc(NameDF7, true, NewDF7Encoder()),
		Validate:    validateFunc(NameDF7, true),
		USBIDs:      nil,
		SilentAfter: silentAfterPackets,
	})
	drivers.Register(&drivers.Driver{
		Name:        NameDF8,
		Description: "Nonin Data Format #8 (WristOx2 3150, Onyx II 9560): SpO2 and pulse rate once a second",
		Link:        link,
		Metrics:     []drivers.MetricID{drivers.SpO2, drivers.PulseRate},
		NewDecoder:  newDecoderFunc(NameDF8, DF8, func() drivers.Decoder { return NewDF8Decoder() }),
		NewEncoder:  newEncoderFunc(NameDF8, true, DF8Encoder{}),
		Validate:    validateFunc(NameDF8, true),
		USBIDs:      nil,
		SilentAfter: silentAfterSeconds,
	})
	drivers.Register(&drivers.Driver{
		Name:        NameASCII,
		Description: "Nonin ASCII real-time output (7500, 8500, 8600V, 9847, BT4000, Avant 9600): SPO2=XXX HR=YYY once a second",
		Link:        link,
		Metrics:     []drivers.MetricID{drivers.SpO2, drivers.PulseRate},
		NewDecoder: func(opts drivers.Options) (drivers.Decoder, error) {
			if _, err := parseOptions(NameASCII, false, opts); err != nil {
				return nil, err
			}
			return NewASCIIDecoder(), nil
		},
		NewEncoder: newEncoderFunc(NameASCII, false, ASCIIEncoder{}),
		Validate:   validateFunc(NameASCII, false),
		// None: these devices have an RS-232 port or a TTL pin, reached
		// through whatever USB-serial cable the site uses.
		USBIDs:      nil,
		SilentAfter: silentAfterSeconds,
	})
}

func newDecoderFunc(name string, df DataFormat, build func() drivers.Decoder) func(drivers.Options) (drivers.Decoder, error) {
	return func(opts drivers.Options) (drivers.Decoder, error) {
		form, err := parseOptions(name, true, opts)
		if err != nil {
			return nil, err
		}
		if form == 0 {
			return build(), nil
		}
		return &formatRequester{Decoder: build(), command: AppendSetFormat(nil, df, form)}, nil
	}
}

// newEncoderFunc accepts the decoder's options so one device config serves
// the agent and the simulator; the simulated device ignores set_format.
func newEncoderFunc(name string, setFormat bool, enc drivers.Encoder) func(drivers.Options) (drivers.Encoder, error) {
	return func(opts drivers.Options) (drivers.Encoder, error) {
		if _, err := parseOptions(name, setFormat, opts); err != nil {
			return nil, err
		}
		return enc, nil
	}
}

func validateFunc(name string, setFormat bool) func(drivers.Options) error {
	return func(opts drivers.Options) error {
		_, err := parseOptions(name, setFormat, opts)
		return err
	}
}

// OptionError reports driver options a Nonin driver does not accept.
type OptionError struct {
	Driver string   // registry name
	Keys   []string // the offending option names, sorted
	Reason string   // what is wrong, and what is accepted
}

func (e *OptionError) Error() string {
	quoted := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		quoted[i] = strconv.Quote(k)
	}
	return fmt.Sprintf("%s: option %s: %s", e.Driver, strings.Join(quoted, ", "), e.Reason)
}

// parseOptions checks opts and returns the set-format form to send (0 for
// none). setFormat says whether the driver takes the set_format option.
func parseOptions(name string, setFormat bool, opts drivers.Options) (SetFormatForm, error) {
	var unknown []string
	for k := range opts {
		if k != OptionSetFormat || !setFormat {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		reason := "unknown; this driver takes no options"
		if setFormat {
			reason = "unknown; the only option is " + OptionSetFormat
		} else if _, ok := opts[OptionSetFormat]; ok {
			reason = "not accepted: the ASCII output is chosen on the device, which takes no commands; " +
				"this driver takes no options"
		}
		return 0, &OptionError{Driver: name, Keys: unknown, Reason: reason}
	}
	v, ok := opts[OptionSetFormat]
	if !ok {
		return 0, nil
	}
	// A type switch: v may hold a slice or a map, which == would panic on.
	shown := fmt.Sprintf("%v (%T)", v, v)
	switch v := v.(type) {
	case bool:
		if v {
			return SetFormatLong, nil
		}
		return 0, nil
	case string:
		switch v {
		case "long":
			return SetFormatLong, nil
		case "short":
			return SetFormatShort, nil
		}
		shown = strconv.Quote(v)
	}
	return 0, &OptionError{
		Driver: name,
		Keys:   []string{OptionSetFormat},
		Reason: shown + ` is not one of false, true, "long" (WristOx2 3150) or "short" (Onyx II 9560)`,
	}
}
