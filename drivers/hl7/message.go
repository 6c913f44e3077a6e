package hl7

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/drivers"
)

// Message is one ORU^R01 message as the decoder understood it. It never
// holds anything from the PID segment (or PV1, NK1...): those segments are
// skipped unread, so no patient identifier can reach a reading, a log or an
// error (README "Privacy").
type Message struct {
	// Sender identifies the monitor the readings come from, for routing:
	// the OBX-18 equipment instance id when the observations carry one,
	// else MSH-4 (sending facility, the device on Comen/Mindray), else
	// MSH-3 (sending application). README "Sender" gives the reasoning.
	Sender      string
	Application string // MSH-3.1, sending application
	Facility    string // MSH-4.1, sending facility or device
	Equipment   string // OBX-18.1, equipment instance id; "" when absent
	// ReceivingApplication and ReceivingFacility (MSH-5.1, MSH-6.1) are who
	// the monitor addressed; the ACK is sent in their name.
	ReceivingApplication string
	ReceivingFacility    string
	ControlID            string    // MSH-10, echoed in the ACK's MSA-2
	Time                 time.Time // MSH-7; zero when absent or unreadable
	Type                 string    // MSH-9.1^MSH-9.2, "ORU^R01"
	Version              string    // MSH-12.1, e.g. "2.6"
	ProcessingID         string    // MSH-11.1: P, D or T
	AcceptAckType        string    // MSH-15: AL, NE, ER, SU or ""
	ApplicationAckType   string    // MSH-16
	// Readings are the catalogue metrics found in the OBX segments, in
	// message order (drivers.Reading; Device and Seq are the agent's).
	Readings []drivers.Reading
	// Unknown lists the OBX segments with no catalogue metric, so the agent
	// can count them and log each code once (clinical.md 2: unknown codes
	// are never silently dropped).
	Unknown []UnknownObservation
	// Result is FrameOK, or FrameInvalidValue when a reading's value was
	// out of range or in a unit that could not be converted.
	Result drivers.FrameResult
}

// WantsACK reports whether the sender asked for an acknowledgement with
// this code. MSH-16 (application acknowledgement type) decides, else
// MSH-15; with neither the message is in original mode and is always
// acknowledged (HL7 v2 2.9, table 0155: AL always, NE never, ER on error
// only, SU on success only).
func (m *Message) WantsACK(code AckCode) bool {
	if m == nil {
		return true
	}
	mode := m.ApplicationAckType
	if mode == "" {
		mode = m.AcceptAckType
	}
	return wantsACK(mode, code)
}

// UnknownObservation is an OBX the decoder could not map to a catalogue
// metric. It holds the identifier and units, never the value: a text OBX
// could hold anything. Strings are cut to 64 bytes with control characters
// replaced, so they are safe to log.
type UnknownObservation struct {
	Code      string // OBX-3.1: "150344", "0002-f0c7", "458752"
	Text      string // OBX-3.2: REFID or the vendor's label
	System    string // OBX-3.3: MDC, MDIL, EHC, 99COMEN...
	ValueType string // OBX-2: NM, ST, CWE...
	Unit      string // OBX-6.1, or 6.2 when 6.1 is empty
	// Recognised is true for codes protocols.md 5.3 names that have no
	// catalogue metric (temperature, ECG heart rate, EtCO2...): expected
	// and harmless. False means a code nobody has looked at yet.
	Recognised bool
}

// Key identifies the observation's code for counting: "MDC:150344",
// "EHC:458752", or the text when there is no code ("MDC:MDC_FOO").
func (u UnknownObservation) Key() string {
	id := u.Code
	if id == "" {
		id = u.Text
	}
	return u.System + ":" + id
}

// Sentinel errors, for errors.Is on what FeedMessages and OnRejected report.
var (
	ErrGarbage        = errors.New("bytes outside an MLLP block")
	ErrTruncated      = errors.New("MLLP block cut short")
	ErrOversize       = errors.New("message longer than " + strconv.Itoa(MaxMessageSize) + " bytes")
	ErrNoMSH          = errors.New("message does not start with an MSH segment")
	ErrDelimiters     = errors.New("bad field separator or encoding characters (MSH-1, MSH-2)")
	ErrSegment        = errors.New("malformed segment")
	ErrField          = errors.New("required field missing or malformed")
	ErrUnsupported    = errors.New("unsupported message type (only ORU^R01 is read)")
	ErrMixedEquipment = errors.New("observations name different equipment (OBX-18): one device per message is supported")
	ErrUnknownSender  = errors.New("message from an unexpected sender")
)

// Error is a frame or message the decoder could not use. Its text names
// positions (segment number, field) and Vigil's own words only, never the
// message's content, apart from the sender id for ErrUnknownSender.
type Error struct {
	Err     error  // one of the Err* sentinels
	Field   string // HL7 position such as "MSH-10" or "OBX-18"; "" when none
	Segment int    // 1-based segment number in the message; 0 when none
	Sender  string // for ErrUnknownSender: the sender the message named
	Dropped int    // stream bytes discarded with it, framing included
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hl7: ")
	b.WriteString(e.Err.Error())
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	if e.Segment > 0 {
		b.WriteString(" (segment ")
		b.WriteString(strconv.Itoa(e.Segment))
		b.WriteString(")")
	}
	if e.Sender != "" {
		b.WriteString(": ")
		b.WriteString(strconv.Quote(e.Sender))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// AckCode is the MSA-1 code to answer this error with: AR (reject) for a
// message type Vigil does not read, AE (error) for everything else.
func (e *Error) AckCode() AckCode {
	if errors.Is(e.Err, ErrUnsupported) {
		return AR
	}
	return AE
}

// parsed is one message as views into the message bytes and the
// decoder's scratch buffer, valid until the next message. Both Feed paths
// work from it; only FeedMessages turns it into a Message with strings.
type parsed struct {
	headerOK bool // MSH read far enough to address an ACK

	app, facility, recvApp, recvFacility []byte
	equipment, sender                    []byte
	controlID, msgCode, trigger          []byte
	version, processingID                []byte
	acceptAck, appAck                    []byte
	time                                 time.Time

	readings []drivers.Reading
	unknown  []UnknownObservation
	result   drivers.FrameResult
}

// Field numbers used, as in HL7 v2 (MSH-n, OBR-n, OBX-n).
const (
	mshApp, mshFacility, mshRecvApp, mshRecvFacility = 3, 4, 5, 6
	mshTime, mshType, mshControlID, mshProcessingID  = 7, 9, 10, 11
	mshVersion, mshAcceptAck, mshAppAck              = 12, 15, 16
	obrTime                                          = 7
	obxValueType, obxID, obxValue, obxUnits          = 2, 3, 5, 6
	obxStatus, obxTime, obxEquipment                 = 11, 14, 18
)

// maxControlID bounds MSH-10 (ST, 199 characters in v2.6).
const maxControlID = 199

// parse reads one message into d.p. On failure d.p.headerOK says whether
// the header fields are usable for an ACK.
func (d *Decoder) parse(msg []byte, now time.Time) *Error {
	p := &d.p
	p.headerOK = false
	p.app, p.facility, p.recvApp, p.recvFacility = nil, nil, nil, nil
	p.equipment, p.sender, p.controlID, p.msgCode, p.trigger = nil, nil, nil, nil, nil
	p.version, p.processingID, p.acceptAck, p.appAck = nil, nil, nil, nil
	p.time = time.Time{}
	p.readings = p.readings[:0]
	p.unknown = p.unknown[:0]
	p.result = drivers.FrameOK
	d.scratch = d.scratch[:0]

	pos := 0
	msh := nextSegment(msg, &pos)
	if len(msh) < 3 || string(msh[:3]) != "MSH" {
		return &Error{Err: ErrNoMSH, Segment: 1}
	}
	delims, ok := parseDelimiters(msh)
	if !ok {
		return &Error{Err: ErrDelimiters, Segment: 1}
	}
	d.delims = delims
	f := &d.fields
	// MSH-1 is the separator itself, so MSH field n is split part n-1.
	splitFields(msh, delims.field, f)
	mshField := func(n int) []byte { return f[n-1] }
	first := func(n int) []byte {
		return delims.unescape(delims.comp(mshField(n), 1), &d.scratch)
	}
	p.app = first(mshApp)
	p.facility = first(mshFacility)
	p.recvApp = first(mshRecvApp)
	p.recvFacility = first(mshRecvFacility)
	p.controlID = delims.unescape(mshField(mshControlID), &d.scratch)
	p.processingID = first(mshProcessingID)
	p.version = first(mshVersion)
	p.acceptAck = delims.unescape(mshField(mshAcceptAck), &d.scratch)
	p.appAck = delims.unescape(mshField(mshAppAck), &d.scratch)
	p.msgCode = delims.comp(mshField(mshType), 1)
	p.trigger = delims.comp(mshField(mshType), 2)
	// A control id, even a broken one, is not used for an ACK unless
	// clean: it is echoed back into the monitor's parser.
	if len(p.controlID) == 0 || len(p.controlID) > maxControlID || !isCleanText(p.controlID) {
		p.controlID = nil
		return &Error{Err: ErrField, Field: "MSH-10", Segment: 1}
	}
	for _, v := range [...][]byte{p.app, p.facility, p.recvApp, p.recvFacility, p.processingID, p.version, p.acceptAck, p.appAck, p.msgCode, p.trigger} {
		if !isCleanText(v) || len(v) > maxControlID {
			return &Error{Err: ErrField, Field: "MSH", Segment: 1}
		}
	}
	p.headerOK = true
	if string(p.msgCode) != "ORU" || string(p.trigger) != "R01" {
		return &Error{Err: ErrUnsupported, Field: "MSH-9", Segment: 1}
	}
	// A missing or unreadable MSH-7 leaves Time zero [I]: the time is
	// recorded, never trusted, and refusing the readings for it would lose
	// vital signs over a clock field.
	p.time, _ = parseTime(mshField(mshTime), delims.component)

	var obrAt time.Time // OBR-7 of the current OBR group
	for n := 2; pos < len(msg); n++ {
		seg := nextSegment(msg, &pos)
		if seg == nil {
			break
		}
		if !validSegmentID(seg, delims.field) {
			return &Error{Err: ErrSegment, Segment: n}
		}
		switch string(seg[:3]) {
		case "MSH":
			// A second message in one block: its boundary is lost.
			return &Error{Err: ErrSegment, Field: "MSH", Segment: n}
		case "OBR":
			splitFields(seg, delims.field, f)
			obrAt, _ = parseTime(f[obrTime], delims.component)
		case "OBX":
			splitFields(seg, delims.field, f)
			if err := d.observation(f, obrAt, now); err != nil {
				err.Segment = n
				return err
			}
		default:
			// PID, PV1 and every other segment are skipped unread:
			// nothing from them is kept (privacy, README).
		}
	}

	switch {
	case len(p.equipment) > 0:
		p.sender = p.equipment
	case len(p.facility) > 0:
		p.sender = p.facility
	default:
		p.sender = p.app
	}
	if len(p.sender) == 0 {
		return &Error{Err: ErrField, Field: "MSH-4"}
	}
	return nil
}

// observation reads one OBX (fields f) into a reading or an unknown
// observation.
func (d *Decoder) observation(f *[maxFields][]byte, obrAt, now time.Time) *Error {
	p := &d.p
	delims := &d.delims
	if eq := delims.unescape(delims.comp(f[obxEquipment], 1), &d.scratch); len(eq) > 0 {
		if !isCleanText(eq) || len(eq) > maxControlID {
			return &Error{Err: ErrField, Field: "OBX-18"}
		}
		switch {
		case len(p.equipment) == 0:
			p.equipment = eq
		case string(eq) != string(p.equipment):
			return &Error{Err: ErrMixedEquipment, Field: "OBX-18"}
		}
	}

	info := delims.identify(f[obxID])
	if info.metric == drivers.MetricUnknown {
		p.unknown = append(p.unknown, d.internUnknown(f, info.known))
		return nil
	}

	r := drivers.Reading{Metric: info.metric, Received: now, DeviceTime: p.time}
	if !obrAt.IsZero() {
		r.DeviceTime = obrAt
	}
	// OBX-14 is sent "only if different from OBR-7" (HL7 v2 7.4.2.14); an
	// unreadable one falls back to OBR-7, then MSH-7 [I] (protocols.md 5.2
	// abbreviates it as "..." in the Comen example).
	if t, ok := parseTime(f[obxTime], delims.component); ok {
		r.DeviceTime = t
	}
	d.value(&r, f)
	if r.Flags&drivers.FlagOutOfRange != 0 {
		p.result = drivers.FrameInvalidValue
	}
	p.readings = append(p.readings, r)
	return nil
}

// value fills r.Value, r.Valid and r.Flags from OBX-2, 5, 6 and 11.
//
//	empty OBX-5, a negative value, or a status meaning "no result"
//	                      -> no value: Valid false, no flag
//	not NM, not a number, a unit that is not the catalogue unit and cannot
//	be converted, an unknown status, or out of the catalogue range
//	                      -> Valid false + FlagOutOfRange (frame InvalidValue)
func (d *Decoder) value(r *drivers.Reading, f *[maxFields][]byte) {
	delims := &d.delims
	raw := delims.unescape(f[obxValue], &d.scratch)
	if len(raw) == 0 {
		return // no value (protocols.md 7.2: empty OBX-5)
	}
	switch status := f[obxStatus]; string(status) {
	case "", "F", "R", "C", "P", "S", "U":
		// Final, unverified (protocols.md 5.2: F or R), corrected,
		// preliminary, partial, changed to final: a measured value.
	case "X", "N", "D", "W", "I":
		// Cannot be obtained, not asked, deleted, wrong, pending: no
		// value, whatever OBX-5 holds (HL7 v2 table 0085).
		return
	default:
		r.Flags |= drivers.FlagOutOfRange
		return
	}
	if vt := f[obxValueType]; string(vt) != "NM" {
		r.Flags |= drivers.FlagOutOfRange
		return
	}
	v, kind := parseNumber(raw)
	switch kind {
	case numberNegative:
		return // "-100": a monitor's no-value form (protocols.md 5.2 [C])
	case numberBad:
		r.Flags |= drivers.FlagOutOfRange
		return
	}
	v, ok := toCatalogueUnit(r.Metric, v, delims.unitOf(f[obxUnits]))
	if !ok {
		r.Flags |= drivers.FlagOutOfRange
		return
	}
	// Value keeps the number even when it is not Valid, for logs;
	// consumers read it only when Valid (drivers.Reading).
	r.Value = v
	if r.Metric.Info().InRange(v) {
		r.Valid = true
	} else {
		r.Flags |= drivers.FlagOutOfRange
	}
}

// maxUnknownKinds bounds the decoder's table of distinct unknown
// observations, so a sender inventing codes cannot grow it without limit.
// Past it, UnknownObservations are still reported, built afresh each time.
const maxUnknownKinds = 1024

// maxUnknownText bounds each string of an UnknownObservation.
const maxUnknownText = 64

// internUnknown returns the UnknownObservation of an OBX, reusing the one
// built the first time the same identifier, type and unit were seen, so a
// monitor sending the same temperature every second costs no allocation.
func (d *Decoder) internUnknown(f *[maxFields][]byte, known bool) UnknownObservation {
	delims := &d.delims
	code := delims.comp(f[obxID], 1)
	text := delims.comp(f[obxID], 2)
	system := delims.comp(f[obxID], 3)
	valueType := delims.comp(f[obxValueType], 1)
	unitText := delims.comp(f[obxUnits], 1)
	if len(unitText) == 0 {
		unitText = delims.comp(f[obxUnits], 2)
	}
	key := d.keyBuf[:0]
	for _, part := range [...][]byte{code, text, system, valueType, unitText} {
		key = append(key, part...)
		key = append(key, 0)
	}
	d.keyBuf = key
	if u, ok := d.unknownKinds[string(key)]; ok {
		return u
	}
	u := UnknownObservation{
		Code:       d.safeText(code),
		Text:       d.safeText(text),
		System:     d.safeText(system),
		ValueType:  d.safeText(valueType),
		Unit:       d.safeText(unitText),
		Recognised: known,
	}
	if len(d.unknownKinds) < maxUnknownKinds {
		if d.unknownKinds == nil {
			d.unknownKinds = make(map[string]UnknownObservation)
		}
		d.unknownKinds[string(key)] = u
	}
	return u
}

// safeText unescapes v and makes it safe to log: at most maxUnknownText
// bytes, cut on a character boundary, control characters and invalid UTF-8
// replaced with '?'.
func (d *Decoder) safeText(v []byte) string {
	v = d.delims.unescape(v, &d.scratch)
	var b strings.Builder
	for len(v) > 0 && b.Len() < maxUnknownText {
		r, size := utf8.DecodeRune(v)
		if r == utf8.RuneError && size <= 1 || r < ' ' || r == 0x7F {
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > maxUnknownText {
			break
		}
		b.WriteRune(r)
		v = v[size:]
	}
	return b.String()
}

// message copies d.p into a new Message the caller owns.
func (d *Decoder) message() *Message {
	p := &d.p
	m := &Message{
		Sender:               d.intern(&d.lastSender, p.sender),
		Application:          d.intern(&d.lastApp, p.app),
		Facility:             d.intern(&d.lastFacility, p.facility),
		Equipment:            d.intern(&d.lastEquipment, p.equipment),
		ReceivingApplication: d.intern(&d.lastRecvApp, p.recvApp),
		ReceivingFacility:    d.intern(&d.lastRecvFacility, p.recvFacility),
		ControlID:            string(p.controlID),
		Time:                 p.time,
		Version:              d.intern(&d.lastVersion, p.version),
		ProcessingID:         d.intern(&d.lastProcessingID, p.processingID),
		AcceptAckType:        d.intern(&d.lastAcceptAck, p.acceptAck),
		ApplicationAckType:   d.intern(&d.lastAppAck, p.appAck),
		Result:               p.result,
	}
	if len(p.msgCode) > 0 || len(p.trigger) > 0 {
		m.Type = d.intern(&d.lastType, append(append(append(d.keyBuf[:0], p.msgCode...), '^'), p.trigger...))
	}
	if len(p.readings) > 0 {
		m.Readings = append([]drivers.Reading(nil), p.readings...)
	}
	if len(p.unknown) > 0 {
		m.Unknown = append([]UnknownObservation(nil), p.unknown...)
	}
	return m
}

// intern returns *last if it equals b, else stores and returns string(b):
// the header fields of one monitor rarely change between messages.
func (d *Decoder) intern(last *string, b []byte) string {
	if *last != string(b) {
		*last = string(b)
	}
	return *last
}
