package hl7

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// comenExample is the protocols.md 5.2 worked example, verbatim: OBX-14 of
// all but the first OBX is "..." as printed there.
const comenExample = `MSH|^~\&|NC_Monitor|KC261551373G|||20250610015127+0800||ORU^R01^ORU_R01|202506100151270003|P|2.6||||||UNICODE UTF-8
PID|||10006||lee|||M||Unknown
PV1||I|^^&10|R
OBR||||1^MON_PARAM^99COMEN|||20250610015127+0800
OBX||NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.150456|97|262688^MDC_DIM_PERCENT^MDC|||||F|||20250610015127+0800
OBX||NM|149522^MDC_PULS_RATE^MDC|1.0.0.149522|59|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||F|||...
OBX||NM|151562^MDC_RESP_RATE^MDC|1.14.1.151562|20|264928^MDC_DIM_RESP_PER_MIN^MDC|||||F|||...
OBX||NM|150344^MDC_TEMP^MDC|1.2.1.150344|37.0|268192^MDC_DIM_DEGC^MDC|||||F|||...
OBX||NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.9.150021|120|266016^MDC_DIM_MMHG^MDC|||||F|||...
OBX||NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.9.150022|80|266016^MDC_DIM_MMHG^MDC|||||F|||...
OBX||NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.1.9.150023|90|266016^MDC_DIM_MMHG^MDC|||||F|||...`

// northernOBX is the protocols.md 5.2 "northern patient monitor" line.
const northernOBX = `OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.150456|-100|262688^MDC_DIM_PERCENT^MDC|||||F||||`

// header builds an MSH for synthetic messages.
func header(facility, controlID string) string {
	return "MSH|^~\\&|APP|" + facility + "|||20260301120000||ORU^R01|" + controlID + "|P|2.6\n"
}

const comenTime = "2025-06-10T01:51:27+08:00"

func TestWorkedExampleComen(t *testing.T) {
	want := []readingView{
		rv(drivers.SpO2, 97, true, comenTime),
		rv(drivers.PulseRate, 59, true, comenTime), // 149522: Comen's alias
		rv(drivers.RespirationRate, 20, true, comenTime),
		rv(drivers.NIBPSystolic, 120, true, comenTime),
		rv(drivers.NIBPDiastolic, 80, true, comenTime),
		rv(drivers.NIBPMean, 90, true, comenTime),
	}
	input := mllp(comenExample)
	for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(input), "byte by byte": decodeByteByByte(input)} {
		if got := views(s.Readings); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: readings\n got %v\nwant %v", how, got, want)
		}
		if s.Frames != (drivertest.FrameCounts{OK: 1}) {
			t.Fatalf("%s: frames %+v", how, s.Frames)
		}
		if wantEvents := []string{"r:spo2", "r:pulse_rate", "r:respiration_rate", "r:nibp_systolic", "r:nibp_diastolic", "r:nibp_mean", "f:ok/0"}; !reflect.DeepEqual(s.Events, wantEvents) {
			t.Fatalf("%s: events %v", how, s.Events)
		}
		for _, r := range s.Readings {
			if !r.Received.Equal(testNow) || r.Device != "" || r.Seq != 0 {
				t.Fatalf("reading %+v: Received must be the Feed time, Device and Seq the agent's", r)
			}
		}
	}

	res := feedMessages(input)
	if len(res) != 1 || res[0].err != nil {
		t.Fatalf("FeedMessages: %+v", res)
	}
	m := res[0].msg
	wantTime := time.Date(2025, 6, 10, 1, 51, 27, 0, time.FixedZone("", 8*3600))
	if m.Sender != "KC261551373G" || m.Facility != "KC261551373G" || m.Application != "NC_Monitor" ||
		m.Equipment != "" || m.ControlID != "202506100151270003" || m.Type != "ORU^R01" ||
		m.Version != "2.6" || m.ProcessingID != "P" || !m.Time.Equal(wantTime) || m.Result != drivers.FrameOK {
		t.Fatalf("message header %+v", m)
	}
	if got := views(m.Readings); !reflect.DeepEqual(got, want) {
		t.Fatalf("FeedMessages readings %v", got)
	}
	wantUnknown := []UnknownObservation{{Code: "150344", Text: "MDC_TEMP", System: "MDC", ValueType: "NM", Unit: "268192", Recognised: true}}
	if !reflect.DeepEqual(m.Unknown, wantUnknown) {
		t.Fatalf("Unknown = %+v, want %+v", m.Unknown, wantUnknown)
	}
	if m.Unknown[0].Key() != "MDC:150344" {
		t.Fatalf("Key = %q", m.Unknown[0].Key())
	}
}

func TestNorthernMonitorNegativeIsNoValue(t *testing.T) {
	s := decodeAll(mllp(header("N1", "1") + northernOBX))
	want := []readingView{rv(drivers.SpO2, 0, false, "2026-03-01T12:00:00Z")}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) || s.Frames != (drivertest.FrameCounts{OK: 1}) {
		t.Fatalf("got %v %+v, want %v and one OK frame", got, s.Frames, want)
	}
}

// obx builds one numeric OBX with the given identifier, value and units.
func obx(id, value, units string) string {
	return "OBX|1|NM|" + id + "||" + value + "|" + units + "|||||F\n"
}

func TestVendorAliases(t *testing.T) {
	tests := []struct {
		name, id, units string
		want            drivers.MetricID
	}{
		{"MDC SpO2", "150456^MDC_PULS_OXIM_SAT_O2^MDC", "262688^MDC_DIM_PERCENT^MDC", drivers.SpO2},
		{"MDC oximeter pulse (Mindray pleth pulse)", "149530^MDC_PULS_OXIM_PULS_RATE^MDC", "264864^MDC_DIM_BEAT_PER_MIN^MDC", drivers.PulseRate},
		{"Comen pulse 149522", "149522^MDC_PULS_RATE^MDC", "264864^MDC_DIM_BEAT_PER_MIN^MDC", drivers.PulseRate},
		{"generic pulse 149514", "149514^MDC_PULS_RATE^MDC", "bpm", drivers.PulseRate},
		{"MDC perfusion index", "150448^MDC_PULS_OXIM_PERF_REL^MDC", "%", drivers.PerfusionIndex},
		{"MDC NIBP sys", "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "266016^MDC_DIM_MMHG^MDC", drivers.NIBPSystolic},
		{"MDC NIBP dia", "150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "mmHg", drivers.NIBPDiastolic},
		{"MDC NIBP mean", "150023^MDC_PRESS_BLD_NONINV_MEAN^MDC", "mm[Hg]", drivers.NIBPMean},
		{"Mindray cuff sys 150301", "150301^MDC_PRESS_CUFF_SYS^MDC", "266016^MDC_DIM_MMHG^MDC", drivers.NIBPSystolic},
		{"Mindray cuff dia 150302", "150302^MDC_PRESS_CUFF_DIA^MDC", "266016^MDC_DIM_MMHG^MDC", drivers.NIBPDiastolic},
		{"Mindray cuff mean 150303", "150303^MDC_PRESS_CUFF_MEAN^MDC", "266016^MDC_DIM_MMHG^MDC", drivers.NIBPMean},
		{"Mindray NIBP pulse 149546", "149546^MDC_PULS_RATE_NON_INV^MDC", "264864^MDC_DIM_BEAT_PER_MIN^MDC", drivers.NIBPPulseRate},
		{"MDC RR", "151562^MDC_RESP_RATE^MDC", "264928^MDC_DIM_RESP_PER_MIN^MDC", drivers.RespirationRate},
		{"Mindray RR 151578", "151578^MDC_TTHOR_RESP_RATE^MDC", "264928^MDC_DIM_RESP_PER_MIN^MDC", drivers.RespirationRate},
		{"Edan SPO2_SPO2", "327680^SPO2_SPO2^EHC", "%", drivers.SpO2},
		{"Edan NIBP_SYS", "393216^NIBP_SYS^EHC", "mmHg", drivers.NIBPSystolic},
		{"Edan NIBP_DIA", "393217^NIBP_DIA^EHC", "mmHg", drivers.NIBPDiastolic},
		{"Edan NIBP_PR", "393219^NIBP_PR^EHC", "bpm", drivers.NIBPPulseRate},
		{"Philips SpO2", "0002-4bb8^SpO2^MDIL", "%", drivers.SpO2},
		{"Philips NBPs", "0002-4a05^NBPs^MDIL", "mmHg", drivers.NIBPSystolic},
		{"Philips NBPd", "0002-4a06^NBPd^MDIL", "mmHg", drivers.NIBPDiastolic},
		{"Philips MDIL upper-case hex", "0002-4BB8^SpO2^MDIL", "%", drivers.SpO2},
		{"REFID only", "^MDC_PULS_OXIM_SAT_O2^MDC", "%", drivers.SpO2},
		{"numeric code without coding system", "150456", "%", drivers.SpO2},
		{"numeric code wins over a contradicting REFID", "150021^MDC_PULS_OXIM_SAT_O2^MDC", "mmHg", drivers.NIBPSystolic},
		{"alternate identifier after LOINC", "59408-5^SpO2^LN^150456^MDC_PULS_OXIM_SAT_O2^MDC", "%", drivers.SpO2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := feedMessages(mllp(header("M1", "1") + obx(tt.id, "95", tt.units)))
			if len(res) != 1 || res[0].err != nil {
				t.Fatalf("FeedMessages: %+v", res)
			}
			m := res[0].msg
			if len(m.Readings) != 1 || len(m.Unknown) != 0 {
				t.Fatalf("readings %v unknown %+v, want one %v", views(m.Readings), m.Unknown, tt.want)
			}
			if r := m.Readings[0]; r.Metric != tt.want || r.Value != 95 || !r.Valid {
				t.Fatalf("reading %v, want %v=95 valid", viewOf(r), tt.want)
			}
		})
	}
}

// Codes without a catalogue metric are reported, never dropped: Recognised
// for those protocols.md names, not for the rest.
func TestUnknownCodesReported(t *testing.T) {
	tests := []struct {
		id         string
		want       UnknownObservation
		recognised bool
	}{
		{"150344^MDC_TEMP^MDC", UnknownObservation{Code: "150344", Text: "MDC_TEMP", System: "MDC"}, true},
		{"188496^MDC_TEMP_AXIL^MDC", UnknownObservation{Code: "188496", Text: "MDC_TEMP_AXIL", System: "MDC"}, true},
		{"147842^MDC_ECG_HEART_RATE^MDC", UnknownObservation{Code: "147842", Text: "MDC_ECG_HEART_RATE", System: "MDC"}, true},
		{"151594^MDC_CO2_RESP_RATE^MDC", UnknownObservation{Code: "151594", Text: "MDC_CO2_RESP_RATE", System: "MDC"}, true},
		{"0002-4182^HR^MDIL", UnknownObservation{Code: "0002-4182", Text: "HR", System: "MDIL"}, true},
		{"0002-f0c7^Temp1^MDIL", UnknownObservation{Code: "0002-f0c7", Text: "Temp1", System: "MDIL"}, true},
		{"131072^ECG_HR^EHC", UnknownObservation{Code: "131072", Text: "ECG_HR", System: "EHC"}, true},
		{"458752^TEMP_T1^EHC", UnknownObservation{Code: "458752", Text: "TEMP_T1", System: "EHC"}, true},
		// Not listed in protocols.md: reported as plainly unknown.
		{"393218^NIBP_MAP^EHC", UnknownObservation{Code: "393218", Text: "NIBP_MAP", System: "EHC"}, false},
		{"150457^MDC_NEW^MDC", UnknownObservation{Code: "150457", Text: "MDC_NEW", System: "MDC"}, false},
		{"150456^SpO2^99MNDRY", UnknownObservation{Code: "150456", Text: "SpO2", System: "99MNDRY"}, false},
		{"^MDC_SOMETHING^MDC", UnknownObservation{Text: "MDC_SOMETHING", System: "MDC"}, false},
		{"", UnknownObservation{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			var seen []UnknownObservation
			d := NewDecoder(Config{})
			d.OnUnknown(func(u UnknownObservation) { seen = append(seen, u) })
			s := &drivertest.Recorder{}
			d.Feed(mllp(header("M1", "1")+obx(tt.id, "37.1", "Cel")), testNow, s)
			want := tt.want
			want.ValueType, want.Unit, want.Recognised = "NM", "Cel", tt.recognised
			if len(seen) != 1 || seen[0] != want || len(s.Readings) != 0 || s.Frames != (drivertest.FrameCounts{OK: 1}) {
				t.Fatalf("unknown %+v readings %v frames %+v; want %+v", seen, views(s.Readings), s.Frames, want)
			}
		})
	}
}

func TestUnknownObservationsAreInterned(t *testing.T) {
	d := NewDecoder(Config{})
	var seen []UnknownObservation
	d.OnUnknown(func(u UnknownObservation) { seen = append(seen, u) })
	msg := mllp(header("M1", "1") + obx("150344^MDC_TEMP^MDC", "37.0", "268192^MDC_DIM_DEGC^MDC"))
	d.Feed(msg, testNow, drivertest.Discard)
	allocs := testing.AllocsPerRun(100, func() { d.Feed(msg, testNow, drivertest.Discard) })
	if allocs != 0 {
		t.Fatalf("%v allocations per message with a known unknown code", allocs)
	}
	if len(seen) < 2 || seen[0] != seen[len(seen)-1] {
		t.Fatalf("seen %v", seen[:2])
	}
	// Control characters and overlong text are made safe to log.
	msg = mllp(header("M1", "2") + obx("1\\X07\\2^"+strings.Repeat("é", 40)+"^99X", "1", ""))
	seen = nil
	d.Feed(msg, testNow, drivertest.Discard)
	if len(seen) != 1 || seen[0].Code != "1?2" || len(seen[0].Text) != 64 || seen[0].Text != strings.Repeat("é", 32) {
		t.Fatalf("unsafe text kept: %+v", seen)
	}
}

func TestEscapeSequences(t *testing.T) {
	d := standardDelimiters
	tests := []struct{ in, want string }{
		{`plain`, `plain`},
		{`a\F\b\S\c\T\d\R\e\E\f`, `a|b^c&d~e\f`},
		{`\X414243\`, `ABC`},
		{`\X4a4B\`, `JK`},
		{`x\H\bold\N\y`, `xboldy`},
		{`line\.br\break`, `linebreak`},
		{`\Zlocal\z`, `z`},
		{`\C2842\x`, `x`},
		{`unterminated\F`, `unterminated\F`},
		{`\X41G\`, `\X41G\`}, // not hex: kept
		{`\X414\`, `\X414\`}, // odd digits: kept
		{`a\\b`, `a\\b`},     // empty sequence: kept
		{`\E\\E\`, `\\`},
	}
	for _, tt := range tests {
		var scratch []byte
		if got := string(d.unescape([]byte(tt.in), &scratch)); got != tt.want {
			t.Errorf("unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	// In a message: a sender and control id with escaped delimiters, a value
	// written with a hex escape, and other delimiters declared in MSH-2.
	msg := "MSH#*@!%#APP#Bed!R!7*x#Fac##20260301120000##ORU*R01#ID!F!1#P#2.6\n" +
		"OBX#1#NM#150456*MDC_PULS_OXIM_SAT_O2*MDC##!X3937!#262688*MDC_DIM_PERCENT\n"
	res := feedMessages(mllp(msg))
	if len(res) != 1 || res[0].err != nil {
		t.Fatalf("FeedMessages: %+v %v", res, res[0].err)
	}
	m := res[0].msg
	if m.Application != "APP" || m.Facility != "Bed@7" || m.Sender != "Bed@7" || m.ControlID != "ID#1" {
		t.Fatalf("header %+v", m)
	}
	if len(m.Readings) != 1 || m.Readings[0].Value != 97 || !m.Readings[0].Valid {
		t.Fatalf("readings %v", views(m.Readings))
	}
}

func TestSegmentEndings(t *testing.T) {
	body := header("M1", "1") + obx("150456^^MDC", "97", "%") + obx("149530^^MDC", "60", "bpm")
	for name, sep := range map[string]string{"CR": "\r", "LF": "\n", "CRLF": "\r\n", "LFCR": "\n\r", "CR CR": "\r\r"} {
		msg := strings.ReplaceAll(body, "\n", sep)
		input := append(append([]byte{startBlock}, msg...), endBlock, carriageRet)
		s := decodeAll(input)
		if len(s.Readings) != 2 || s.Frames != (drivertest.FrameCounts{OK: 1}) {
			t.Errorf("%s: readings %v frames %+v", name, views(s.Readings), s.Frames)
		}
	}
	// The last segment need not end with CR.
	input := append(append([]byte{startBlock}, strings.TrimSuffix(strings.ReplaceAll(body, "\n", "\r"), "\r")...), endBlock, carriageRet)
	if s := decodeAll(input); len(s.Readings) != 2 {
		t.Errorf("without a final CR: %v", views(s.Readings))
	}
}

func TestValues(t *testing.T) {
	const at = "2026-03-01T12:00:00Z"
	tests := []struct {
		name string
		line string
		want readingView
	}{
		{"integer", obx("150456^^MDC", "97", "%"), rv(drivers.SpO2, 97, true, at)},
		{"decimal", "OBX|1|NM|150448^^MDC||3.25|%\n", rv(drivers.PerfusionIndex, 3.25, true, at)},
		{"plus sign", obx("150456^^MDC", "+97", "%"), rv(drivers.SpO2, 97, true, at)},
		{"leading point", "OBX|1|NM|150448^^MDC||.5|%\n", rv(drivers.PerfusionIndex, 0.5, true, at)},
		{"empty value: no value", obx("150456^^MDC", "", "%"), rv(drivers.SpO2, 0, false, at)},
		{"-100: no value", obx("150456^^MDC", "-100", "%"), rv(drivers.SpO2, 0, false, at)},
		{"-0: no value", obx("149530^^MDC", "-0", "bpm"), rv(drivers.PulseRate, 0, false, at)},
		{"status X: no value", "OBX|1|NM|150456^^MDC||97|%|||||X\n", rv(drivers.SpO2, 0, false, at)},
		{"status W: no value", "OBX|1|NM|150456^^MDC||97|%|||||W\n", rv(drivers.SpO2, 0, false, at)},
		{"status R: a value", "OBX|1|NM|150456^^MDC||97|%|||||R\n", rv(drivers.SpO2, 97, true, at)},
		{"status C: a value", "OBX|1|NM|150456^^MDC||97|%|||||C\n", rv(drivers.SpO2, 97, true, at)},
		{"unknown status", "OBX|1|NM|150456^^MDC||97|%|||||Q\n", rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"value type ST", "OBX|1|ST|150456^^MDC||97|%\n", rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"no value type", "OBX|1||150456^^MDC||97|%\n", rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"not a number", obx("150456^^MDC", "9a7", "%"), rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"exponent", obx("150456^^MDC", "9.7E1", "%"), rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"comma", obx("150456^^MDC", "97,0", "%"), rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"space", obx("150456^^MDC", " 97", "%"), rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"two points", obx("150456^^MDC", "9.7.", "%"), rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"repeated value", obx("150456^^MDC", "97~98", "%"), rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"sign only", obx("150456^^MDC", "+", "%"), rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"17 digits", obx("150448^^MDC", "58.561915003466346", "%"), rv(drivers.PerfusionIndex, 58.561915003466346, true, at)},
		{"too long", obx("150448^^MDC", "1."+strings.Repeat("0", 31), "%"), rv(drivers.PerfusionIndex, 0, false, at, "out-of-range")},
		{"above range keeps the number", obx("150456^^MDC", "101", "%"), rv(drivers.SpO2, 101, false, at, "out-of-range")},
		{"NIBP below range", obx("150021^^MDC", "19", "mmHg"), rv(drivers.NIBPSystolic, 19, false, at, "out-of-range")},
		{"range edge", obx("150021^^MDC", "300", "mmHg"), rv(drivers.NIBPSystolic, 300, true, at)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := decodeAll(mllp(header("M1", "1") + tt.line))
			if got := views(s.Readings); !reflect.DeepEqual(got, []readingView{tt.want}) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			wantFrames := drivertest.FrameCounts{OK: 1}
			if len(tt.want.Flags) > 0 {
				wantFrames = drivertest.FrameCounts{InvalidValue: 1}
			}
			if s.Frames != wantFrames {
				t.Fatalf("frames %+v, want %+v", s.Frames, wantFrames)
			}
		})
	}
}

func TestUnits(t *testing.T) {
	const at = "2026-03-01T12:00:00Z"
	tests := []struct {
		name, id, value, units string
		want                   readingView
	}{
		{"kPa to mmHg", "150021^^MDC", "16.0", "kPa", rv(drivers.NIBPSystolic, 120, true, at)},
		{"kPa 11073 code", "150022^^MDC", "10.7", "265987^MDC_DIM_KILO_PASCAL^MDC", rv(drivers.NIBPDiastolic, 80, true, at)},
		{"kPa rounds to whole mmHg", "150023^^MDC", "13.3", "kPa", rv(drivers.NIBPMean, 100, true, at)},
		{"kPa out of range after conversion", "150021^^MDC", "45", "kPa", rv(drivers.NIBPSystolic, 338, false, at, "out-of-range")},
		{"unit text case", "150021^^MDC", "120", "MMHG", rv(drivers.NIBPSystolic, 120, true, at)},
		{"code and text agree", "150021^^MDC", "120", "266016^mmHg^MDC", rv(drivers.NIBPSystolic, 120, true, at)},
		{"code and text disagree", "150021^^MDC", "120", "266016^kPa^MDC", rv(drivers.NIBPSystolic, 0, false, at, "out-of-range")},
		{"pressure without unit refused", "150021^^MDC", "120", "", rv(drivers.NIBPSystolic, 0, false, at, "out-of-range")},
		{"pressure in cmH2O refused", "150021^^MDC", "120", "cm[H2O]", rv(drivers.NIBPSystolic, 0, false, at, "out-of-range")},
		{"SpO2 without unit", "150456^^MDC", "97", "", rv(drivers.SpO2, 97, true, at)},
		{"SpO2 as a fraction refused", "150456^^MDC", "0.97", "262656^MDC_DIM_DIMLESS^MDC", rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"SpO2 in mmHg refused", "150456^^MDC", "97", "mmHg", rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"pulse in bpm", "149530^^MDC", "72", "bpm", rv(drivers.PulseRate, 72, true, at)},
		{"pulse in {beats}/min", "149530^^MDC", "72", "{beats}/min", rv(drivers.PulseRate, 72, true, at)},
		{"pulse in Hz refused", "149530^^MDC", "1.2", "Hz", rv(drivers.PulseRate, 0, false, at, "out-of-range")},
		{"RR in rpm", "151562^^MDC", "14", "rpm", rv(drivers.RespirationRate, 14, true, at)},
		{"empty components", "150456^^MDC", "97", "^^MDC", rv(drivers.SpO2, 0, false, at, "out-of-range")},
		{"no value in an unknown unit stays no value", "150021^^MDC", "", "furlong", rv(drivers.NIBPSystolic, 0, false, at)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := decodeAll(mllp(header("M1", "1") + obx(tt.id, tt.value, tt.units)))
			if got := views(s.Readings); !reflect.DeepEqual(got, []readingView{tt.want}) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDeviceTime(t *testing.T) {
	tests := []struct {
		name, msh7, obr7, obx14 string
		want                    string
	}{
		{"OBX-14 first", "20260301120000", "20260301120100", "20260301120200", "2026-03-01T12:02:00Z"},
		{"then OBR-7", "20260301120000", "20260301120100", "", "2026-03-01T12:01:00Z"},
		{"unreadable OBX-14 falls back", "20260301120000", "20260301120100", "...", "2026-03-01T12:01:00Z"},
		{"then MSH-7", "20260301120000", "", "", "2026-03-01T12:00:00Z"},
		{"none", "", "", "", ""},
		{"unreadable everywhere", "2026", "202603", "2026030112000", ""},
		{"offset", "20260301120000-0500", "", "", "2026-03-01T12:00:00-05:00"},
		{"no zone is UTC", "20260301235959", "", "", "2026-03-01T23:59:59Z"},
		{"fraction", "20260301120000.25+0100", "", "", "2026-03-01T12:00:00.25+01:00"},
		{"date only", "20260301", "", "", "2026-03-01T00:00:00Z"},
		{"minutes", "202603011205", "", "", "2026-03-01T12:05:00Z"},
		{"TS precision component ignored", "20260301120000^S", "", "", "2026-03-01T12:00:00Z"},
		{"Feb 29 of a leap year", "20280229120000", "", "", "2028-02-29T12:00:00Z"},
		{"Feb 29 of another year", "20260229120000", "", "", ""},
		{"hour 24", "20260301240000", "", "", ""},
		{"bad zone", "20260301120000+08", "", "", ""},
		{"fraction without seconds", "202603011200.5", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := "MSH|^~\\&|APP|M1|||" + tt.msh7 + "||ORU^R01|1|P|2.6\n"
			if tt.obr7 != "" {
				msg += "OBR|1|||x|||" + tt.obr7 + "\n"
			}
			msg += "OBX|1|NM|150456^^MDC||97|%|||||F|||" + tt.obx14 + "\n"
			s := decodeAll(mllp(msg))
			if len(s.Readings) != 1 || views(s.Readings)[0].DeviceTime != tt.want {
				t.Fatalf("readings %v, want device time %q", views(s.Readings), tt.want)
			}
		})
	}
	// Each OBR starts a new group with its own time.
	msg := header("M1", "1") + "OBR|1|||x|||20260301100000\n" + obx("150456^^MDC", "97", "%") +
		"OBR|2|||x|||20260301110000\n" + obx("150021^^MDC", "120", "mmHg")
	s := decodeAll(mllp(msg))
	if v := views(s.Readings); len(v) != 2 || v[0].DeviceTime != "2026-03-01T10:00:00Z" || v[1].DeviceTime != "2026-03-01T11:00:00Z" {
		t.Fatalf("OBR groups: %v", v)
	}
}

func TestSenderPrecedence(t *testing.T) {
	tests := []struct {
		name, msh3, msh4, obx18a, obx18b string
		want, field                      string
	}{
		{"MSH-4", "NC_Monitor", "KC261551373G", "", "", "KC261551373G", "MSH-4"},
		{"MSH-4 first component", "NC_Monitor", "BED7^1.2.3^ISO", "", "", "BED7", "MSH-4"},
		{"MSH-3 when MSH-4 is empty", "MONITOR7", "", "", "", "MONITOR7", "MSH-3"},
		{"OBX-18 over MSH-4", "GW", "GATEWAY", "0123456789ABCDEF^EUI-64", "", "0123456789ABCDEF", "OBX-18"},
		{"OBX-18 on some OBX only", "GW", "GATEWAY", "", "0123456789ABCDEF^EUI-64", "0123456789ABCDEF", "OBX-18"},
		{"same OBX-18 twice", "GW", "GATEWAY", "0123456789ABCDEF^EUI-64", "0123456789ABCDEF", "0123456789ABCDEF", "OBX-18"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := "MSH|^~\\&|" + tt.msh3 + "|" + tt.msh4 + "|||20260301120000||ORU^R01|1|P|2.6\n" +
				"OBX|1|NM|150456^^MDC||97|%|||||F|||||||" + tt.obx18a + "\n" +
				"OBX|2|NM|149530^^MDC||60|bpm|||||F|||||||" + tt.obx18b + "\n"
			res := feedMessages(mllp(msg))
			if len(res) != 1 || res[0].err != nil || res[0].msg.Sender != tt.want {
				t.Fatalf("got %+v, want sender %q", res, tt.want)
			}
			// Feed with a configured sender: the same message is accepted for
			// tt.want and refused, naming the field, for anyone else.
			s := &drivertest.Recorder{}
			NewDecoder(Config{Sender: tt.want}).Feed(mllp(msg), testNow, s)
			if len(s.Readings) != 2 || s.Frames != (drivertest.FrameCounts{OK: 1}) {
				t.Fatalf("configured sender %q: %v %+v", tt.want, views(s.Readings), s.Frames)
			}
			var rejected []error
			d := NewDecoder(Config{Sender: "OTHER", ACKs: true})
			d.OnRejected(func(err error) { rejected = append(rejected, err) })
			s = &drivertest.Recorder{}
			d.Feed(mllp(msg), testNow, s)
			if len(s.Readings) != 0 || s.Frames != (drivertest.FrameCounts{Malformed: 1, Dropped: len(mllp(msg))}) {
				t.Fatalf("other sender: %v %+v", views(s.Readings), s.Frames)
			}
			var e *Error
			if len(rejected) != 1 || !errors.As(rejected[0], &e) || !errors.Is(e, ErrUnknownSender) ||
				e.Sender != tt.want || e.Field != tt.field || e.AckCode() != AE {
				t.Fatalf("rejected %v", rejected)
			}
			if ack := string(d.TakeReplies(nil)); !strings.Contains(ack, "\rMSA|AE|1|hl7: message from an unexpected sender: "+tt.field) {
				t.Fatalf("reply %q", ack)
			}
		})
	}
}

func TestMalformedMessages(t *testing.T) {
	okOBX := obx("150456^^MDC", "97", "%")
	tests := []struct {
		name     string
		msg      string
		want     error
		field    string
		headerOK bool
	}{
		{"missing MSH", "PID|||12345\n" + okOBX, ErrNoMSH, "", false},
		{"empty message", "", ErrNoMSH, "", false},
		{"lower-case msh", strings.Replace(header("M1", "1"), "MSH", "msh", 1) + okOBX, ErrNoMSH, "", false},
		{"three encoding characters", "MSH|^~\\|APP|M1|||20260301120000||ORU^R01|1|P|2.6\n" + okOBX, ErrDelimiters, "", false},
		{"repeated delimiter", "MSH|^^\\&|APP|M1|||20260301120000||ORU^R01|1|P|2.6\n" + okOBX, ErrDelimiters, "", false},
		{"field separator among encoding chars", "MSH|^~\\&&|APP|M1|||20260301120000||ORU^R01|1|P|2.6\n" + okOBX, ErrDelimiters, "", false},
		{"letter as separator", "MSHA^~\\&AAPPAM1", ErrDelimiters, "", false},
		{"MSH cut after separator", "MSH|", ErrDelimiters, "", false},
		{"six encoding characters", "MSH|^~\\&#!|APP|M1|||20260301120000||ORU^R01|1|P|2.6\n" + okOBX, ErrDelimiters, "", false},
		{"no control id", header("M1", "") + okOBX, ErrField, "MSH-10", false},
		{"control id with a tab", header("M1", "a\\X09\\b") + okOBX, ErrField, "MSH-10", false},
		{"not ORU", "MSH|^~\\&|APP|M1|||20260301120000||ADT^A01|7|P|2.6\n" + okOBX, ErrUnsupported, "MSH-9", true},
		{"ORU but not R01", "MSH|^~\\&|APP|M1|||20260301120000||ORU^R40|7|P|2.6\n" + okOBX, ErrUnsupported, "MSH-9", true},
		{"no sender at all", "MSH|^~\\&|||||20260301120000||ORU^R01|1|P|2.6\n" + okOBX, ErrField, "MSH-4", true},
		{"bad segment id", header("M1", "1") + "obx|1|NM|150456^^MDC||97|%\n", ErrSegment, "", true},
		{"segment id cut", header("M1", "1") + "OB\n", ErrSegment, "", true},
		{"segment id without separator", header("M1", "1") + "OBXX|1\n", ErrSegment, "", true},
		{"second MSH", header("M1", "1") + okOBX + header("M1", "2") + okOBX, ErrSegment, "MSH", true},
		{"mixed equipment", header("GW", "1") + "OBX|1|NM|150456^^MDC||97|%|||||F|||||||AAA\nOBX|2|NM|150456^^MDC||96|%|||||F|||||||BBB\n", ErrMixedEquipment, "OBX-18", true},
		{"binary in a segment id", header("M1", "1") + "\x00\x01\x02|x\n", ErrSegment, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := mllp(tt.msg)
			s := decodeAll(input)
			if len(s.Readings) != 0 || s.Frames != (drivertest.FrameCounts{Malformed: 1, Dropped: len(input)}) {
				t.Fatalf("Feed: readings %v frames %+v", views(s.Readings), s.Frames)
			}
			res := feedMessages(input)
			if len(res) != 1 {
				t.Fatalf("FeedMessages: %d results", len(res))
			}
			var e *Error
			if !errors.As(res[0].err, &e) || !errors.Is(e, tt.want) || e.Field != tt.field || e.Dropped != len(input) {
				t.Fatalf("error %v (%#v), want %v at %q", res[0].err, res[0].err, tt.want, tt.field)
			}
			if (res[0].msg != nil) != tt.headerOK {
				t.Fatalf("msg %+v, want header usable %v", res[0].msg, tt.headerOK)
			}
			if m := res[0].msg; m != nil && (len(m.Readings) != 0 || m.Result != drivers.FrameMalformed) {
				t.Fatalf("a refused message carries readings: %+v", m)
			}
		})
	}
}

func TestFraming(t *testing.T) {
	good := mllp(header("M1", "1") + obx("150456^^MDC", "97", "%"))
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	body := good[1 : len(good)-2] // the message without framing
	tests := []struct {
		name   string
		input  []byte
		frames drivertest.FrameCounts
		errs   []error
	}{
		{"one message", good, drivertest.FrameCounts{OK: 1}, []error{nil}},
		{"two back to back", cat(good, good), drivertest.FrameCounts{OK: 2}, []error{nil, nil}},
		{"garbage before", cat([]byte("hello\r\n"), good), drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: 7}, []error{ErrGarbage, nil}},
		{"LF after the trailer", cat(good, []byte("\n"), good), drivertest.FrameCounts{OK: 2, Malformed: 1, Dropped: 1}, []error{nil, ErrGarbage, nil}},
		{"unframed HL7", cat(body, []byte{'\r'}, good), drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: len(body) + 1}, []error{ErrGarbage, nil}},
		{"new start block inside a message", cat(good[:20], good), drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: 20}, []error{ErrTruncated, nil}},
		{"end block without CR", cat(good[:len(good)-1], good), drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: len(good) - 1}, []error{ErrTruncated, nil}},
		{"end block then garbage", cat(good[:len(good)-1], []byte("xy"), good), drivertest.FrameCounts{OK: 1, Malformed: 2, Dropped: len(good) - 1 + 2}, []error{ErrTruncated, ErrGarbage, nil}},
		{"unfinished message", cat(good, good[:30]), drivertest.FrameCounts{OK: 1}, []error{nil}},
		{"empty block", cat([]byte{startBlock, endBlock, carriageRet}, good), drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: 3}, []error{ErrNoMSH, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(tt.input), "byte by byte": decodeByteByByte(tt.input)} {
				if s.Frames != tt.frames {
					t.Fatalf("%s: frames %+v, want %+v", how, s.Frames, tt.frames)
				}
			}
			res := feedMessages(tt.input)
			if len(res) != len(tt.errs) {
				t.Fatalf("FeedMessages gave %d results, want %d: %+v", len(res), len(tt.errs), res)
			}
			for i, want := range tt.errs {
				if (want == nil) != (res[i].err == nil) || (want != nil && !errors.Is(res[i].err, want)) {
					t.Fatalf("result %d: %v, want %v", i, res[i].err, want)
				}
			}
		})
	}
}

func TestEverySplitPoint(t *testing.T) {
	input := append(append(append([]byte("xx"), mllp(comenExample)...), mllp(header("M1", "2")+obx("150021^^MDC", "400", "mmHg"))...), 0x0B, 'M')
	want := decodeAll(input)
	if want.Frames != (drivertest.FrameCounts{OK: 1, InvalidValue: 1, Malformed: 1, Dropped: 2}) {
		t.Fatalf("whole: %+v", want.Frames)
	}
	for cut := range len(input) + 1 {
		d := NewDecoder(Config{})
		s := drivertest.FeedCut(d, input, cut, testNow)
		if s.Frames != want.Frames || !reflect.DeepEqual(views(s.Readings), views(want.Readings)) {
			t.Fatalf("cut at %d: %+v %v", cut, s.Frames, views(s.Readings))
		}
		if !d.Pending() {
			t.Fatalf("cut at %d: the unfinished block is not pending", cut)
		}
	}
}

func TestOversize(t *testing.T) {
	big := make([]byte, 0, MaxMessageSize+200)
	big = append(big, header("M1", "1")...)
	for len(big) <= MaxMessageSize+100 {
		big = append(big, "NTE|1||padding padding padding padding padding\r"...)
	}
	input := append(mllp(string(big)), mllp(header("M1", "2")+obx("150456^^MDC", "97", "%"))...)
	d := NewDecoder(Config{})
	var errs []error
	d.FeedMessages(input, testNow, func(m *Message, err error) { errs = append(errs, err) })
	if len(errs) < 3 || !errors.Is(errs[0], ErrOversize) || !errors.Is(errs[len(errs)-2], ErrGarbage) || errs[len(errs)-1] != nil {
		t.Fatalf("errors %v", errs)
	}
	for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(input), "byte by byte": decodeByteByByte(input)} {
		dropped := s.Frames.Dropped
		if s.Frames.OK != 1 || len(s.Readings) != 1 || dropped != len(big)+framingBytes {
			t.Fatalf("%s: %+v, want every byte of the big block dropped (%d)", how, s.Frames, len(big)+framingBytes)
		}
	}
	if cap(d.framer.buf) > MaxMessageSize {
		t.Fatalf("buffer grew to %d", cap(d.framer.buf))
	}
}

// A stream with no start block is reported every maxGarbageRun bytes, so a
// sender without MLLP framing shows up while it sends.
func TestGarbageReportedInRuns(t *testing.T) {
	input := []byte(strings.Repeat("MSH|^~\\&|no framing\r", 1000))
	for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(input), "byte by byte": decodeByteByByte(input)} {
		runs := len(input) / maxGarbageRun
		if s.Frames != (drivertest.FrameCounts{Malformed: runs, Dropped: runs * maxGarbageRun}) {
			t.Fatalf("%s: %+v", how, s.Frames)
		}
	}
}

func TestMessageReadingsAreOwned(t *testing.T) {
	var msgs []*Message
	d := NewDecoder(Config{})
	d.FeedMessages(mllp(comenExample), testNow, func(m *Message, err error) { msgs = append(msgs, m) })
	d.FeedMessages(mllp(header("M1", "1")+obx("150021^^MDC", "150", "mmHg")), testNow, func(m *Message, err error) { msgs = append(msgs, m) })
	if len(msgs) != 2 || msgs[0].Readings[0].Value != 97 || msgs[0].Sender != "KC261551373G" || msgs[1].Readings[0].Value != 150 {
		t.Fatalf("a later message changed an earlier one: %v / %v", views(msgs[0].Readings), views(msgs[1].Readings))
	}
}
