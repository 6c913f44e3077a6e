package hl7

import (
	"time"
)

// AckCode is MSA-1, the acknowledgement code (HL7 v2 table 0008, original
// mode).
type AckCode string

const (
	AA AckCode = "AA" // application accept: the message was read
	AE AckCode = "AE" // application error: a parse error, an unknown sender
	AR AckCode = "AR" // application reject: a message type Vigil does not read
)

// ackApplication is the ACK's sending application (MSH-3) when the monitor
// did not name a receiving application in MSH-5.
const ackApplication = "VIGIL"

// Field lengths the ACK keeps to (HL7 v2.5: MSA-3 80, ERR-8 250).
const (
	maxMSA3 = 80
	maxERR8 = 250
)

// ACK returns the MLLP-framed acknowledgement of msg (protocols.md 5.2:
// the receiver answers each message with MSA|AA), in original mode:
//
//	MSH|^~\&|<MSH-5>|<MSH-6>|<MSH-3>|<MSH-4>|<now>||ACK^<trigger>^ACK|<MSH-10>|<MSH-11>|<MSH-12>
//	MSA|<code>|<MSH-10>[|<reason>]
//	ERR|||207^Application internal error^HL70357|E||||<reason>   (AE)
//	ERR|||200^Unsupported message type^HL70357|E||||<reason>     (AR)
//
// segments ending in CR, wrapped in 0x0B ... 0x1C 0x0D. The ACK is sent in
// the name of the application the monitor addressed (MSH-5/6, or "VIGIL"),
// back to the monitor (MSH-3/4), with the monitor's trigger event, version
// and processing id (R01, 2.6 and P when msg has none). Its own control id
// (MSH-10) repeats the message's [I], which keeps ACK a pure function of its
// arguments; monitors match the answer on MSA-2. For versions before 2.5
// the ERR segment uses ERR-1 (`ERR|^^^207&Application internal
// error&HL70357`), the only ERR field those versions have.
//
// msg may be nil (a message whose header could not be read): MSA-2 is then
// empty. reason (cut to 80 bytes in MSA-3 and 250 in ERR-8, delimiters
// escaped, control characters removed) is left out for AA when empty. A
// code other than AA, AE and AR is sent as AE. now is written to MSH-7 in
// its own zone.
func ACK(msg *Message, code AckCode, reason string, now time.Time) []byte {
	var h ackHeader[string]
	if msg != nil {
		h = ackHeader[string]{
			app: msg.Application, facility: msg.Facility,
			recvApp: msg.ReceivingApplication, recvFacility: msg.ReceivingFacility,
			controlID: msg.ControlID, version: msg.Version, processingID: msg.ProcessingID,
		}
		if _, trigger, ok := cut(msg.Type, '^'); ok {
			h.trigger = trigger
		}
	}
	return appendACK(make([]byte, 0, 256+len(reason)), &h, code, reason, now)
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// wantsACK applies MSH-16 (or MSH-15) mode to code: see Message.WantsACK.
func wantsACK(mode string, code AckCode) bool {
	switch mode {
	case "NE":
		return false
	case "ER":
		return code != AA
	case "SU":
		return code == AA
	}
	return true
}

// text is what the ACK is built from: Message strings for ACK, the
// decoder's byte views for Feed's queued ACKs.
type text interface{ ~string | ~[]byte }

type ackHeader[T text] struct {
	app, facility, recvApp, recvFacility T
	controlID, trigger, version          T
	processingID                         T
}

func appendACK[T text](dst []byte, h *ackHeader[T], code AckCode, reason string, now time.Time) []byte {
	switch code {
	case AA, AE, AR:
	default:
		code = AE
	}
	dst = append(dst, startBlock)
	dst = append(dst, "MSH|^~\\&|"...)
	if len(h.recvApp) > 0 {
		dst = appendEscaped(dst, h.recvApp, maxControlID)
	} else {
		dst = append(dst, ackApplication...)
	}
	dst = append(dst, '|')
	dst = appendEscaped(dst, h.recvFacility, maxControlID)
	dst = append(dst, '|')
	dst = appendEscaped(dst, h.app, maxControlID)
	dst = append(dst, '|')
	dst = appendEscaped(dst, h.facility, maxControlID)
	dst = append(dst, '|')
	dst = now.AppendFormat(dst, "20060102150405-0700")
	dst = append(dst, "||ACK^"...)
	if len(h.trigger) > 0 {
		dst = appendEscaped(dst, h.trigger, maxControlID)
	} else {
		dst = append(dst, "R01"...)
	}
	dst = append(dst, "^ACK|"...)
	if len(h.controlID) > 0 {
		dst = appendEscaped(dst, h.controlID, maxControlID)
	} else {
		// No message control id to repeat: one from the clock.
		dst = append(dst, ackApplication...)
		dst = now.AppendFormat(dst, "20060102150405.000")
	}
	dst = append(dst, '|')
	if len(h.processingID) > 0 {
		dst = appendEscaped(dst, h.processingID, maxControlID)
	} else {
		dst = append(dst, 'P')
	}
	dst = append(dst, '|')
	oldERR := false
	if len(h.version) > 0 {
		dst = appendEscaped(dst, h.version, maxControlID)
		oldERR = preV25(h.version)
	} else {
		dst = append(dst, "2.6"...)
	}
	dst = append(dst, '\r')

	dst = append(dst, "MSA|"...)
	dst = append(dst, code...)
	dst = append(dst, '|')
	dst = appendEscaped(dst, h.controlID, maxControlID)
	if reason != "" {
		dst = append(dst, '|')
		dst = appendEscaped(dst, reason, maxMSA3)
	}
	dst = append(dst, '\r')

	if code != AA {
		errCode := "207^Application internal error^HL70357"
		if code == AR {
			errCode = "200^Unsupported message type^HL70357"
		}
		if oldERR {
			// ERR-1 (ELD): segment^sequence^field^code, code as
			// subcomponents.
			dst = append(dst, "ERR|^^^"...)
			for i := 0; i < len(errCode); i++ {
				c := errCode[i]
				if c == '^' {
					c = '&'
				}
				dst = append(dst, c)
			}
		} else {
			dst = append(dst, "ERR|||"...)
			dst = append(dst, errCode...)
			dst = append(dst, "|E||||"...)
			dst = appendEscaped(dst, reason, maxERR8)
		}
		dst = append(dst, '\r')
	}
	return append(dst, endBlock, carriageRet)
}

// preV25 reports whether an HL7 version (2.1, 2.3.1, ...) predates the
// v2.5 ERR segment.
func preV25[T text](v T) bool {
	if len(v) < 3 || v[0] != '2' || v[1] != '.' || v[2] < '1' || v[2] > '4' {
		return false
	}
	return len(v) == 3 || v[3] == '.'
}

// appendEscaped writes s with the standard delimiters escaped (HL7 v2 2.7:
// | ^ ~ \ & as \F\ \S\ \R\ \E\ \T\), control characters dropped, and at
// most max bytes of s, cut on a UTF-8 character boundary.
func appendEscaped[T text](dst []byte, s T, max int) []byte {
	n := len(s)
	if n > max {
		n = max
		for n > 0 && s[n]&0xC0 == 0x80 {
			n-- // do not cut inside a character
		}
	}
	for i := 0; i < n; i++ {
		c := s[i]
		switch c {
		case '|':
			dst = append(dst, `\F\`...)
		case '^':
			dst = append(dst, `\S\`...)
		case '~':
			dst = append(dst, `\R\`...)
		case '\\':
			dst = append(dst, `\E\`...)
		case '&':
			dst = append(dst, `\T\`...)
		default:
			if c >= ' ' && c != 0x7F {
				dst = append(dst, c)
			}
		}
	}
	return dst
}
