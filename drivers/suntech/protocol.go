package suntech

import (
	"encoding/binary"
	"strconv"
)

// Framing bytes and lengths, protocols.md 4.1 [C].
const (
	// HostStart begins every packet the host sends (':').
	HostStart = 0x3A
	// ModuleStart begins every packet the module sends ('>').
	ModuleStart = 0x3E

	// LenStatus is the LEN of a one-character status reply (O, K, A, ...).
	LenStatus = 0x04
	// LenPressure is the LEN of a reply carrying one little-endian u16:
	// the cuff pressure (and, [I], the module-status word).
	LenPressure = 0x05
	// LenResult is the LEN of the BP result reply: 21 data bytes.
	LenResult = 0x18

	// maxFrameLen is the longest module packet this driver accepts. ak-git
	// caps LEN at 0x43 (the version-string reply), but Vigil never asks for
	// that, so only the three documented lengths are frames.
	maxFrameLen   = LenResult
	resultDataLen = LenResult - 3
)

// Status characters of a LEN=4 reply, protocols.md 4.1 [C: nPM].
const (
	StatusReceived       = 'O' // start accepted: the measurement runs
	StatusExecuted       = 'K' // done / executed
	StatusAborted        = 'A' // aborted
	StatusBusy           = 'B' // busy
	StatusError          = 'E' // error
	StatusUndefined      = 'N' // undefined
	StatusUnrecognizable = 'D' // unrecognizable command
	StatusSleep          = 'S' // sleep
	StatusTimeout        = 'T' // timeout
)

// StatusText names a status character for logs and LastError.
func StatusText(c byte) string {
	switch c {
	case StatusReceived:
		return "received"
	case StatusExecuted:
		return "done"
	case StatusAborted:
		return "aborted"
	case StatusBusy:
		return "busy"
	case StatusError:
		return "error"
	case StatusUndefined:
		return "undefined"
	case StatusUnrecognizable:
		return "unrecognizable"
	case StatusSleep:
		return "sleep"
	case StatusTimeout:
		return "timeout"
	}
	return "unknown status 0x" + strconv.FormatUint(uint64(c), 16)
}

// Host command bytes (after ':'), protocols.md 4.1 [C: nPM constants].
const (
	cmdStartAdult        = 0x20
	cmdStartPediatric    = 0x87
	cmdStartNeonatal     = 0x28
	cmdExtended          = 0x79 // followed by two bytes: 79 xx yy
	cmdSetInflation      = 0x17
	cmdControlPneumatics = 0x0C
	cmdCalibrate         = 0x04
	cmdSetSleepMode      = 0x81
	cmdVenousStasis      = 0x86
	cmdReset             = 0x8A

	extAbort        = 0x01 // 79 01 00
	extGetBPData    = 0x03 // 79 03 00
	extGetPressure  = 0x05 // 79 05 00
	extReturnCode   = 0x02 // 79 02 03
	extModuleStatus = 0x10 // 79 10 03
)

// Patient selects the start command: the module runs a different
// inflation algorithm for each (protocols.md 4.1).
type Patient uint8

const (
	PatientAdult Patient = iota
	PatientPediatric
	PatientNeonatal
)

func (p Patient) String() string {
	switch p {
	case PatientAdult:
		return "adult"
	case PatientPediatric:
		return "pediatric"
	case PatientNeonatal:
		return "neonatal"
	}
	return "unknown"
}

func (p Patient) command() byte {
	switch p {
	case PatientPediatric:
		return cmdStartPediatric
	case PatientNeonatal:
		return cmdStartNeonatal
	}
	return cmdStartAdult
}

// Checksum returns the byte that makes the 8-bit sum of p plus itself
// zero: 0x100 minus the sum of p (protocols.md 4.1 [C]).
func Checksum(p []byte) byte {
	var sum byte
	for _, b := range p {
		sum += b
	}
	return -sum
}

// sumIsZero reports whether a whole packet, checksum included, sums to 0.
func sumIsZero(p []byte) bool {
	var sum byte
	for _, b := range p {
		sum += b
	}
	return sum == 0
}

// AppendHostPacket appends ':' + body + checksum to dst. The Append*
// functions below are this with the body of each documented command.
func AppendHostPacket(dst []byte, body ...byte) []byte {
	start := len(dst)
	dst = append(dst, HostStart)
	dst = append(dst, body...)
	return append(dst, Checksum(dst[start:]))
}

// AppendStart appends "start BP measurement" for p: `3A 20 A6` (adult),
// `3A 87 3F` (pediatric), `3A 28 9E` (neonatal).
func AppendStart(dst []byte, p Patient) []byte {
	return AppendHostPacket(dst, p.command())
}

// AppendAbort appends "abort BP": `3A 79 01 00 4C`.
func AppendAbort(dst []byte) []byte {
	return AppendHostPacket(dst, cmdExtended, extAbort, 0x00)
}

// AppendGetBPData appends "get BP data": `3A 79 03 00 4A`.
func AppendGetBPData(dst []byte) []byte {
	return AppendHostPacket(dst, cmdExtended, extGetBPData, 0x00)
}

// AppendGetCuffPressure appends "get cuff pressure": `3A 79 05 00 48`.
func AppendGetCuffPressure(dst []byte) []byte {
	return AppendHostPacket(dst, cmdExtended, extGetPressure, 0x00)
}

// AppendGetReturnCode appends "get return code": `3A 79 02 03 48`.
func AppendGetReturnCode(dst []byte) []byte {
	return AppendHostPacket(dst, cmdExtended, extReturnCode, 0x03)
}

// AppendGetModuleStatus appends "module status": `3A 79 10 03 3A`.
func AppendGetModuleStatus(dst []byte) []byte {
	return AppendHostPacket(dst, cmdExtended, extModuleStatus, 0x03)
}

// AppendSetInitialInflation appends "set initial inflation pressure",
// mmHg as a little-endian u16: 160 mmHg is `3A 17 A0 00 0F`.
func AppendSetInitialInflation(dst []byte, mmHg uint16) []byte {
	return AppendHostPacket(dst, cmdSetInflation, byte(mmHg), byte(mmHg>>8))
}

// AppendControlPneumatics appends "control pneumatics" with its three
// bytes; ak-git's "all closed" is `3A 0C 00 01 01 B8`. The meaning of each
// byte is not documented in protocols.md [U]: they are passed through.
func AppendControlPneumatics(dst []byte, b0, b1, b2 byte) []byte {
	return AppendHostPacket(dst, cmdControlPneumatics, b0, b1, b2)
}

// AppendCalibrateTransducer appends "calibrate transducer / service
// pressure point" with its one byte (nPM sends 0 or 1) [U].
func AppendCalibrateTransducer(dst []byte, b0 byte) []byte {
	return AppendHostPacket(dst, cmdCalibrate, b0)
}

// AppendSetSleepMode appends "set sleep mode" with its four bytes [U].
func AppendSetSleepMode(dst []byte, b [4]byte) []byte {
	return AppendHostPacket(dst, cmdSetSleepMode, b[0], b[1], b[2], b[3])
}

// AppendVenousStasis appends "venous stasis" with its three bytes [U].
func AppendVenousStasis(dst []byte, b0, b1, b2 byte) []byte {
	return AppendHostPacket(dst, cmdVenousStasis, b0, b1, b2)
}

// AppendReset appends "reset": `3A 8A 3C`.
func AppendReset(dst []byte) []byte {
	return AppendHostPacket(dst, cmdReset)
}

// hostBodyLen is the number of bytes between ':' and the checksum of each
// documented host command (protocols.md 4.1 table); 0 for an unknown one.
func hostBodyLen(cmd byte) int {
	switch cmd {
	case cmdStartAdult, cmdStartPediatric, cmdStartNeonatal, cmdReset:
		return 1
	case cmdCalibrate:
		return 2
	case cmdExtended, cmdSetInflation:
		return 3
	case cmdControlPneumatics, cmdVenousStasis:
		return 4
	case cmdSetSleepMode:
		return 5
	}
	return 0
}

// Result is the BP result payload of a LEN=0x18 reply (protocols.md 4.1,
// little-endian) [C: ak-git test comment, nPM decoder].
type Result struct {
	Systolic  uint16  // mmHg
	Diastolic uint16  // mmHg
	Beats     uint8   // heart beats detected during the determination
	Status    uint8   // BP status: meaning not documented [U], not mapped
	TestCodes [8]byte // TC[0..7]: not documented [U], not mapped
	HeartRate uint8   // beats per minute (one byte; the next is spare)
	Mean      uint16  // MAP, mmHg
	ErrorCode uint8   // 0 = OK; anything else: the values are invalid
}

// parseResult reads the 21 data bytes of a result reply.
func parseResult(data []byte) Result {
	_ = data[resultDataLen-1]
	r := Result{
		Systolic:  binary.LittleEndian.Uint16(data[0:]),
		Diastolic: binary.LittleEndian.Uint16(data[2:]),
		Beats:     data[4],
		Status:    data[5],
		HeartRate: data[14],
		Mean:      binary.LittleEndian.Uint16(data[16:]),
		ErrorCode: data[18],
	}
	copy(r.TestCodes[:], data[6:14])
	return r
}

// AppendResultReply appends a module's LEN=0x18 result packet for r; the
// spare bytes are zero.
func AppendResultReply(dst []byte, r Result) []byte {
	start := len(dst)
	dst = append(dst, ModuleStart, LenResult)
	dst = binary.LittleEndian.AppendUint16(dst, r.Systolic)
	dst = binary.LittleEndian.AppendUint16(dst, r.Diastolic)
	dst = append(dst, r.Beats, r.Status)
	dst = append(dst, r.TestCodes[:]...)
	dst = append(dst, r.HeartRate, 0)
	dst = binary.LittleEndian.AppendUint16(dst, r.Mean)
	dst = append(dst, r.ErrorCode, 0, 0)
	return append(dst, Checksum(dst[start:]))
}

// AppendStatusReply appends a module's LEN=4 status packet: `3E 04 4B 73`
// for 'K'.
func AppendStatusReply(dst []byte, c byte) []byte {
	start := len(dst)
	dst = append(dst, ModuleStart, LenStatus, c)
	return append(dst, Checksum(dst[start:]))
}

// AppendPressureReply appends a module's LEN=5 packet carrying v: 258 mmHg
// is `3E 05 02 01 BA`.
func AppendPressureReply(dst []byte, v uint16) []byte {
	start := len(dst)
	dst = append(dst, ModuleStart, LenPressure, byte(v), byte(v>>8))
	return append(dst, Checksum(dst[start:]))
}

// Error codes. The positive ones are the module's result error code
// (protocols.md 4.1); the negative ones are outcomes the driver itself
// decides, so that LastError names every way a measurement can end.
const (
	CodeOK = 0

	// CodeTimedOut: the measurement did not end within MaxMeasurement.
	CodeTimedOut = -1
	// CodeNoReply: the module stopped answering (MaxRetries resends).
	CodeNoReply = -2
	// CodeRefused: the module answered the start command with a status
	// other than 'O' or 'B', or reported sleep mode while measuring.
	CodeRefused = -3
	// CodeAborted: the host aborted the measurement (nibp_abort).
	CodeAborted = -4
	// CodeModuleAborted: the module reported 'A' while measuring without
	// the host asking.
	CodeModuleAborted = -5
)

// ErrorText names an error code: every module code protocols.md 4.1
// documents, the same codes as nPM's other table writes them (see below),
// and the driver's own negative codes.
//
// nPM SuntechProvider.cpp holds two tables that disagree. Its result
// decoder tests the bytes 0x85, 0x87, 0x88, 0x89, 0x90, 0x91, 0x97, 0x99
// (the values protocols.md lists), while its error-code enum, from the
// same SunTech manual, gives the same meanings to 0x55-0x5B, 0x61 and 0x63,
// which are 85-91, 97 and 99 in decimal. The enum looks like the manual's
// decimal numbers and the decoder like those numbers misread as hex, but
// which the module really sends is not settled [U]. Both sets are named;
// any non-zero code makes the values invalid either way, so the choice only
// affects the text. TestErrorText pins both.
func ErrorText(code int) string {
	switch code {
	case CodeOK:
		return "no error"
	case CodeTimedOut:
		return "measurement did not finish in time"
	case CodeNoReply:
		return "module did not reply"
	case CodeRefused:
		return "module refused the measurement"
	case CodeAborted:
		return "measurement aborted by the host"
	case CodeModuleAborted:
		return "measurement aborted by the module"

	case 0x01:
		return "weak or no signal"
	case 0x02:
		return "excessive motion or artifact (erratic signal)"
	case 0x03:
		return "blood pressure out of range"
	case 0x04:
		return "measurement timeout"

	// protocols.md 4.1 / nPM result decoder.
	case 0x85:
		return "pneumatic blockage"
	case 0x87:
		return "cuff error: loose or leaking cuff"
	case 0x88:
		return "measurement timeout (safety timeout)"
	case 0x89:
		return "cuff over-pressure"
	case 0x90:
		return "hardware error"
	case 0x91:
		return "measurement timeout (permission problem)"
	case 0x97:
		return "transducer out of range"
	case 0x99:
		return "EEPROM failure"

	// nPM error-code enum: the same codes as decimal numbers [U].
	case 0x55:
		return "pneumatic blockage (code 85)"
	case 0x56:
		return "BP read terminated by the user (code 86)"
	case 0x57:
		return "inflate timeout, air leak or loose cuff (code 87)"
	case 0x58:
		return "safety timeout (code 88)"
	case 0x59:
		return "cuff over-pressure (code 89)"
	case 0x5A:
		return "power supply out of range or other hardware problem (code 90)"
	case 0x5B:
		return "permission problem: safety override or auto-zero out of range (code 91)"
	case 0x61:
		return "transducer out of range (code 97)"
	case 0x63:
		return "EEPROM calibration data failure (code 99)"
	}
	if code > 0 && code <= 0xFF {
		return "unknown module error code 0x" + strconv.FormatUint(uint64(code), 16)
	}
	return "unknown error code " + strconv.Itoa(code)
}

// documentedErrorCodes lists every positive code ErrorText names, for tests
// and the emulator.
var documentedErrorCodes = []uint8{
	0x01, 0x02, 0x03, 0x04,
	0x85, 0x87, 0x88, 0x89, 0x90, 0x91, 0x97, 0x99,
	0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5B, 0x61, 0x63,
}
