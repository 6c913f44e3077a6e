package suntech

import (
	"strings"
	"testing"
)

// TestHostCommands pins the exact bytes of every host command protocols.md
// 4.1 documents. The four with full packets in the section (start adult,
// get BP data, get cuff pressure, pneumatics all closed) are its bytes
// verbatim; the others' checksums were computed by hand from the rule.
func TestHostCommands(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"start adult (protocols.md, ak-git)", AppendStart(nil, PatientAdult), "3A 20 A6"},
		{"start pediatric", AppendStart(nil, PatientPediatric), "3A 87 3F"},
		{"start neonatal", AppendStart(nil, PatientNeonatal), "3A 28 9E"},
		{"abort BP", AppendAbort(nil), "3A 79 01 00 4C"},
		{"get BP data (protocols.md, ak-git)", AppendGetBPData(nil), "3A 79 03 00 4A"},
		{"get cuff pressure (protocols.md, ak-git)", AppendGetCuffPressure(nil), "3A 79 05 00 48"},
		{"get return code", AppendGetReturnCode(nil), "3A 79 02 03 48"},
		{"module status", AppendGetModuleStatus(nil), "3A 79 10 03 3A"},
		{"set initial inflation 160 mmHg", AppendSetInitialInflation(nil, 160), "3A 17 A0 00 0F"},
		{"set initial inflation 0x0102 little-endian", AppendSetInitialInflation(nil, 0x0102), "3A 17 02 01 AC"},
		{"control pneumatics all closed (protocols.md, ak-git)", AppendControlPneumatics(nil, 0x00, 0x01, 0x01), "3A 0C 00 01 01 B8"},
		{"calibrate transducer 1", AppendCalibrateTransducer(nil, 1), "3A 04 01 C1"},
		{"set sleep mode", AppendSetSleepMode(nil, [4]byte{1, 2, 3, 4}), "3A 81 01 02 03 04 3B"},
		{"venous stasis", AppendVenousStasis(nil, 1, 2, 3), "3A 86 01 02 03 3A"},
		{"reset", AppendReset(nil), "3A 8A 3C"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := hexBytes(t, tt.want)
			if hexOf(tt.got) != hexOf(want) {
				t.Fatalf("got % X, want % X", tt.got, want)
			}
			if !sumIsZero(tt.got) {
				t.Fatalf("% X does not sum to 0", tt.got)
			}
			if n := hostBodyLen(tt.got[1]); n != len(tt.got)-2 {
				t.Fatalf("hostBodyLen(0x%02X) = %d, packet body is %d bytes", tt.got[1], n, len(tt.got)-2)
			}
		})
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	dst := []byte{0xEE}
	got := AppendGetCuffPressure(dst)
	if hexOf(got) != "EE3A79050048" {
		t.Fatalf("got % X", got)
	}
}

// TestModuleReplies pins the module-side encoders on the worked examples
// (protocols.md 4.1, ak-git NIBPBytesInterceptorTest).
func TestModuleReplies(t *testing.T) {
	if got := AppendPressureReply(nil, 258); hexOf(got) != "3E050201BA" {
		t.Errorf("pressure 258: % X", got)
	}
	if got := AppendStatusReply(nil, 'K'); hexOf(got) != "3E044B73" {
		t.Errorf("K: % X", got)
	}
	r := Result{Systolic: 115, Diastolic: 74, Beats: 30, Status: 1,
		TestCodes: [8]byte{0, 0, 0, 0, 0, 0, 0x31, 0x07}, HeartRate: 85, Mean: 88}
	want := hexBytes(t, workedResult)
	if got := AppendResultReply(nil, r); hexOf(got) != hexOf(want) {
		t.Errorf("result:\n got % X\nwant % X", got, want)
	}
	if got := parseResult(want[2 : 2+resultDataLen]); got != r {
		t.Errorf("parseResult = %+v, want %+v", got, r)
	}
}

func TestChecksum(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want byte
	}{
		{"3A 20", 0xA6},
		{"3E 05 02 01", 0xBA},
		{"3E 04 4B", 0x73},
		{"", 0x00},
		{"FF 01", 0x00},
	} {
		if got := Checksum(hexBytes(t, tt.in)); got != tt.want {
			t.Errorf("Checksum(%s) = %02X, want %02X", tt.in, got, tt.want)
		}
	}
}

// TestErrorText pins the name of every documented code: protocols.md 4.1's
// list, nPM's decimal-as-hex twin of it [U], and the driver's own codes.
func TestErrorText(t *testing.T) {
	want := map[int]string{
		0:    "no error",
		0x01: "weak",
		0x02: "motion",
		0x03: "out of range",
		0x04: "timeout",
		0x85: "pneumatic blockage",
		0x87: "cuff",
		0x88: "timeout",
		0x89: "over-pressure",
		0x90: "hardware",
		0x91: "timeout",
		0x97: "transducer",
		0x99: "EEPROM",
		0x55: "pneumatic blockage (code 85)",
		0x56: "terminated by the user (code 86)",
		0x57: "loose cuff (code 87)",
		0x58: "safety timeout (code 88)",
		0x59: "over-pressure (code 89)",
		0x5A: "hardware problem (code 90)",
		0x5B: "permission problem",
		0x61: "transducer out of range (code 97)",
		0x63: "EEPROM calibration data failure (code 99)",

		CodeTimedOut:      "did not finish in time",
		CodeNoReply:       "did not reply",
		CodeRefused:       "refused",
		CodeAborted:       "aborted by the host",
		CodeModuleAborted: "aborted by the module",
		0x42:              "unknown module error code 0x42",
		-99:               "unknown error code -99",
	}
	for code, sub := range want {
		if got := ErrorText(code); !strings.Contains(got, sub) {
			t.Errorf("ErrorText(%#x) = %q, want it to contain %q", code, got, sub)
		}
	}
	for _, c := range documentedErrorCodes {
		if _, ok := want[int(c)]; !ok {
			t.Errorf("documented code 0x%02X has no expectation here", c)
		}
		if strings.HasPrefix(ErrorText(int(c)), "unknown") {
			t.Errorf("documented code 0x%02X is unnamed", c)
		}
	}
}

func TestStatusText(t *testing.T) {
	for c, want := range map[byte]string{'O': "received", 'K': "done", 'A': "aborted", 'B': "busy", 'E': "error",
		'N': "undefined", 'D': "unrecognizable", 'S': "sleep", 'T': "timeout", 'x': "unknown status 0x78"} {
		if got := StatusText(c); got != want {
			t.Errorf("StatusText(%q) = %q, want %q", c, got, want)
		}
	}
}
