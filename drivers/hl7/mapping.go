package hl7

import (
	"bytes"
	"math"

	"github.com/vigil-monitor/vigil/drivers"
)

// How an OBX-3 observation identifier becomes a catalogue metric
// (protocols.md 5.2 and 5.3). Monitors identify observations in one of
// these coding systems (OBX-3.3):
//
//	MDC   ISO/IEEE 11073-10101 numeric code (partition x 65536 + term),
//	      with the REFID as text: 150456^MDC_PULS_OXIM_SAT_O2^MDC
//	MDIL  Philips: <partition>-<term in hex>, the same number written
//	      differently: 0002-4bb8^SpO2^MDIL is 2 x 65536 + 0x4BB8 = 150456
//	EHC   Edan's private codes: 393216^NIBP_SYS^EHC
//
// The numeric code decides (protocols.md 5.2: "Match on the numeric code";
// Comen sends 149522 with the REFID MDC_PULS_RATE). Only when there is no
// numeric code is the REFID text looked up. If the first coding system is
// not one of these, the CWE alternate identifier (OBX-3.4 to 3.6) is tried.

// codeSystem is the coding system of an observation code.
type codeSystem uint8

const (
	systemUnknown codeSystem = iota
	systemMDC                // MDC and MDIL: the 11073-10101 numeric code
	systemEHC                // Edan's EHC
)

// codeInfo is what Vigil knows about a code: its catalogue metric, or
// MetricUnknown for a code protocols.md names that has no catalogue metric
// (temperature, ECG heart rate, EtCO2...). Those are reported like unknown
// codes, marked Recognised.
type codeInfo struct {
	metric drivers.MetricID
	known  bool
}

// mdcCode maps an 11073-10101 numeric code. Sources, all protocols.md:
// 5.3 table (standard codes), 5.2 vendor variants (aliases), 5.1 (Philips
// MDIL terms, which are 11073 terms).
func mdcCode(code uint32) codeInfo {
	switch code {
	case 150456: // MDC_PULS_OXIM_SAT_O2
		return codeInfo{drivers.SpO2, true}
	case 149530: // MDC_PULS_OXIM_PULS_RATE; Mindray's pleth pulse (5.2)
		return codeInfo{drivers.PulseRate, true}
	case 149522:
		// Comen's pulse, labelled MDC_PULS_RATE; in IEEE 149522 is
		// MDC_BLD_PULS_RATE_INV (5.2 [C, observed]). Vendor alias: a
		// treatment room has no invasive line, so the only pulse it can be
		// is the monitor's pulse rate.
		return codeInfo{drivers.PulseRate, true}
	case 149514:
		// MDC_PULS_RATE, pulse rate with the method unspecified (5.3), as
		// Philips exports its pleth pulse (physio id 0x480A, 5.1) [I].
		return codeInfo{drivers.PulseRate, true}
	case 150448: // MDC_PULS_OXIM_PERF_REL
		return codeInfo{drivers.PerfusionIndex, true}
	case 150021, 150301: // MDC_PRESS_BLD_NONINV_SYS; Mindray MDC_PRESS_CUFF_SYS (5.2)
		return codeInfo{drivers.NIBPSystolic, true}
	case 150022, 150302: // _DIA; MDC_PRESS_CUFF_DIA
		return codeInfo{drivers.NIBPDiastolic, true}
	case 150023, 150303: // _MEAN; MDC_PRESS_CUFF_MEAN
		return codeInfo{drivers.NIBPMean, true}
	case 149546: // MDC_PULS_RATE_NON_INV, Mindray's NIBP pulse (5.2)
		return codeInfo{drivers.NIBPPulseRate, true}
	case 151562: // MDC_RESP_RATE
		return codeInfo{drivers.RespirationRate, true}
	case 151578: // MDC_TTHOR_RESP_RATE: Mindray's RR (5.2)
		return codeInfo{drivers.RespirationRate, true}
	case 147842, // MDC_ECG_HEART_RATE: not a pulse rate
		150020,                 // MDC_PRESS_BLD_NONINV, the compound
		151570, 151594, 151658, // RR from airway, CO2, pleth: see README "one code per metric"
		151708, 151728, // EtCO2 (5.3 [U])
		150344, 150364, 150388, 150392, // temperatures (5.3)
		150368, 188424, 188452, 188420, 188428,
		188496, // Mindray MDC_TEMP_AXIL (5.2)
		192711: // Philips 0002-f0c7 Temp1 (5.2)
		return codeInfo{known: true}
	}
	return codeInfo{}
}

// ehcCode maps Edan's EHC codes, exactly those protocols.md 5.2 lists.
// Edan's NIBP mean, pulse rate and respiration codes are not known [U]:
// they arrive as unknown observations, so the agent logs them.
func ehcCode(code uint32) codeInfo {
	switch code {
	case 327680: // SPO2_SPO2
		return codeInfo{drivers.SpO2, true}
	case 393216: // NIBP_SYS
		return codeInfo{drivers.NIBPSystolic, true}
	case 393217: // NIBP_DIA
		return codeInfo{drivers.NIBPDiastolic, true}
	case 393219: // NIBP_PR
		return codeInfo{drivers.NIBPPulseRate, true}
	case 131072, // ECG_HR
		458752: // TEMP_T1
		return codeInfo{known: true}
	}
	return codeInfo{}
}

// refIDCode maps a REFID sent without a numeric code to that code.
func refIDCode(refID []byte) (uint32, bool) {
	switch string(refID) {
	case "MDC_PULS_OXIM_SAT_O2":
		return 150456, true
	case "MDC_PULS_OXIM_PULS_RATE":
		return 149530, true
	case "MDC_PULS_RATE":
		return 149514, true
	case "MDC_PULS_OXIM_PERF_REL":
		return 150448, true
	case "MDC_PRESS_BLD_NONINV_SYS":
		return 150021, true
	case "MDC_PRESS_BLD_NONINV_DIA":
		return 150022, true
	case "MDC_PRESS_BLD_NONINV_MEAN":
		return 150023, true
	case "MDC_PRESS_CUFF_SYS":
		return 150301, true
	case "MDC_PRESS_CUFF_DIA":
		return 150302, true
	case "MDC_PRESS_CUFF_MEAN":
		return 150303, true
	case "MDC_PULS_RATE_NON_INV":
		return 149546, true
	case "MDC_RESP_RATE":
		return 151562, true
	case "MDC_TTHOR_RESP_RATE":
		return 151578, true
	case "MDC_ECG_HEART_RATE":
		return 147842, true
	case "MDC_TEMP":
		return 150344, true
	}
	return 0, false
}

// identify maps an OBX-3 field to a code. The first triple whose coding
// system Vigil reads decides; a triple in a known system whose code cannot
// be read (EHC code not a number) decides too, as unknown.
func (d *delimiters) identify(obx3 []byte) codeInfo {
	for _, first := range [2]int{1, 4} {
		code := d.comp(obx3, first)
		text := d.comp(obx3, first+1)
		system := d.comp(obx3, first+2)
		switch {
		case string(system) == "MDC" || (len(system) == 0 && first == 1):
			// No coding system: read as MDC when the code is numeric [I].
			if n, ok := parseCode(code); ok {
				return mdcCode(n)
			}
			if len(code) == 0 {
				if n, ok := refIDCode(text); ok {
					return mdcCode(n)
				}
			}
			if len(system) > 0 {
				return codeInfo{}
			}
		case string(system) == "MDIL":
			if n, ok := parseMDIL(code); ok {
				return mdcCode(n)
			}
			return codeInfo{}
		case string(system) == "EHC":
			if n, ok := parseCode(code); ok {
				return ehcCode(n)
			}
			return codeInfo{}
		}
	}
	return codeInfo{}
}

// parseCode reads a decimal code of 1 to 9 digits.
func parseCode(b []byte) (uint32, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	var n uint32
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint32(c-'0')
	}
	return n, true
}

// parseMDIL reads Philips' "<partition>-<term>" code, both in hex
// (protocols.md 5.2: 0002-4bb8): partition x 65536 + term, the 11073 rule
// (5.3).
func parseMDIL(b []byte) (uint32, bool) {
	dash := bytes.IndexByte(b, '-')
	if dash < 1 || dash > 4 || len(b)-dash-1 < 1 || len(b)-dash-1 > 4 {
		return 0, false
	}
	var partition, term uint32
	for _, c := range b[:dash] {
		v, ok := hexDigit(c)
		if !ok {
			return 0, false
		}
		partition = partition<<4 | uint32(v)
	}
	for _, c := range b[dash+1:] {
		v, ok := hexDigit(c)
		if !ok {
			return 0, false
		}
		term = term<<4 | uint32(v)
	}
	return partition<<16 | term, true
}

// unit is what an OBX-6 units field means.
type unit uint8

const (
	unitNone    unit = iota // empty OBX-6
	unitPercent             // %
	unitPerMin              // /min: beats, breaths
	unitMMHg                // mm[Hg]
	unitKPa                 // kPa
	unitUnknown             // anything else, or two components that disagree
)

// unitOf classifies an OBX-6 field from its code (component 1) and text
// (component 2): monitors send `code^MDC_DIM_x^MDC` with the 11073 unit code
// (protocols.md 5.2, 5.3), some gateways plain UCUM or display text
// (`mmHg`, `bpm`, `%`).
func (d *delimiters) unitOf(obx6 []byte) unit {
	if len(obx6) == 0 {
		return unitNone
	}
	code := unitToken(d.comp(obx6, 1))
	text := unitToken(d.comp(obx6, 2))
	switch {
	case code == unitNone && text == unitNone:
		return unitUnknown // components present but both empty: "^^MDC"
	case code == unitNone:
		return text
	case text == unitNone || text == code:
		return code
	}
	return unitUnknown
}

// unitToken classifies one component; unitNone when it is empty.
func unitToken(b []byte) unit {
	if len(b) == 0 {
		return unitNone
	}
	for _, t := range unitTokens {
		if equalFold(b, t.text) {
			return t.unit
		}
	}
	return unitUnknown
}

// unitTokens: 11073 unit codes and REFIDs (protocols.md 5.3: 262688
// MDC_DIM_PERCENT, 264864 MDC_DIM_BEAT_PER_MIN, 264928
// MDC_DIM_RESP_PER_MIN, 266016 MDC_DIM_MMHG, 265987 MDC_DIM_KILO_PASCAL),
// UCUM codes, and the display forms gateways send (5.2: "mmHg", "bpm",
// "%"). Compared ignoring case: no two entries differ only by case.
var unitTokens = [...]struct {
	text string
	unit unit
}{
	{"262688", unitPercent}, {"MDC_DIM_PERCENT", unitPercent}, {"%", unitPercent},
	{"264864", unitPerMin}, {"MDC_DIM_BEAT_PER_MIN", unitPerMin},
	{"264928", unitPerMin}, {"MDC_DIM_RESP_PER_MIN", unitPerMin},
	{"/min", unitPerMin}, {"1/min", unitPerMin}, {"bpm", unitPerMin}, {"rpm", unitPerMin},
	{"{beat}/min", unitPerMin}, {"{beats}/min", unitPerMin},
	{"{breath}/min", unitPerMin}, {"{breaths}/min", unitPerMin},
	{"266016", unitMMHg}, {"MDC_DIM_MMHG", unitMMHg}, {"mm[Hg]", unitMMHg}, {"mmHg", unitMMHg},
	{"265987", unitKPa}, {"MDC_DIM_KILO_PASCAL", unitKPa}, {"kPa", unitKPa},
}

// pascalPerMMHg is the conventional millimetre of mercury (13.5951 g/cm3
// x 9.80665 m/s2 x 1 mm).
const pascalPerMMHg = 133.322387415

// toCatalogueUnit converts v in unit u to the metric's catalogue unit. It
// returns false when u is not that unit and cannot be converted to it.
//
// An empty OBX-6 is read as the catalogue unit for % and /min metrics,
// whose quantity has no other unit in use, but refused for pressures [I]:
// 16 kPa read as 16 mmHg would pass every range check for a diastolic, so
// guessing the unit of a pressure could report a dangerous value as normal.
func toCatalogueUnit(m drivers.MetricID, v float64, u unit) (float64, bool) {
	switch m {
	case drivers.SpO2, drivers.PerfusionIndex:
		return v, u == unitPercent || u == unitNone
	case drivers.PulseRate, drivers.NIBPPulseRate, drivers.RespirationRate:
		return v, u == unitPerMin || u == unitNone
	case drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean:
		switch u {
		case unitMMHg:
			return v, true
		case unitKPa:
			// Monitors show NIBP in whole mmHg; a kPa value has one
			// decimal (0.1 kPa = 0.75 mmHg), so rounding to the mmHg loses
			// nothing it carried.
			return math.Round(v * 1000 / pascalPerMMHg), true
		}
	}
	return v, false
}

// equalFold compares ASCII text ignoring case, without converting s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
