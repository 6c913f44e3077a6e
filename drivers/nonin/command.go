package nonin

import (
	"fmt"
	"io"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// DataFormat is a Nonin serial data format number, as the set-format
// command names it (protocols.md 1.5).
type DataFormat uint8

// The formats this package decodes.
const (
	DF2 DataFormat = 0x02
	DF7 DataFormat = 0x07
	DF8 DataFormat = 0x08
)

// SetFormatForm is which of the two documented layouts of the 0x70
// set-format command a device takes (protocols.md 1.5).
type SetFormatForm uint8

const (
	// SetFormatLong is `02 70 04 02 DF OPT CHK 03`, as mdpnp sends it to a
	// WristOx2 3150 [C]. OPT is 0x21: bit 5 keeps Bluetooth enabled at
	// power-on, bit 0 is set as mdpnp sets it (its meaning is not
	// documented), bit 6 (spot-check mode) is clear: Vigil wants the
	// continuous stream.
	SetFormatLong SetFormatForm = iota + 1
	// SetFormatShort is `02 70 02 02 DF 03`, as mattjlewis sends it to an
	// Onyx II 9560 [C].
	SetFormatShort
)

func (f SetFormatForm) String() string {
	switch f {
	case SetFormatLong:
		return "long"
	case SetFormatShort:
		return "short"
	}
	return "none"
}

// Envelope and fields of a host command (protocols.md 1.5 [C]).
const (
	cmdSTX       = 0x02
	cmdETX       = 0x03
	opSetFormat  = 0x70
	setFormatOpt = 0x21 // see SetFormatLong
)

// AppendSetFormat appends the set-format command asking for df to dst.
// The device answers ACK 0x06 or NAK 0x15; decoders count that byte as
// dropped like any other byte outside a frame (README "Set-format command").
func AppendSetFormat(dst []byte, df DataFormat, form SetFormatForm) []byte {
	switch form {
	case SetFormatShort:
		return append(dst, cmdSTX, opSetFormat, 0x02, 0x02, byte(df), cmdETX)
	default:
		const length = 0x04
		// CHK = (opcode + length + 0x02 + DF + OPT) mod 256.
		chk := byte(opSetFormat + length + 0x02 + byte(df) + setFormatOpt)
		return append(dst, cmdSTX, opSetFormat, length, 0x02, byte(df), setFormatOpt, chk, cmdETX)
	}
}

// formatRequester is a decoder that asks the device for its data format when
// the agent connects (drivers.Conversation): the device option set_format.
// The command is sent once per connection; there is no keep-alive.
type formatRequester struct {
	drivers.Decoder
	command []byte
}

// Start writes the set-format command.
func (r *formatRequester) Start(w io.Writer, _ time.Time) error {
	if _, err := w.Write(r.command); err != nil {
		return fmt.Errorf("nonin: sending set-format command % X: %w", r.command, err)
	}
	return nil
}

// Tick does nothing: the device keeps its format for the connection.
func (r *formatRequester) Tick(io.Writer, time.Time) error { return nil }

// TickEvery is 0: no keep-alive.
func (r *formatRequester) TickEvery() time.Duration { return 0 }
