package hl7

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

func comenMessage(t *testing.T) *Message {
	t.Helper()
	res := feedMessages(mllp(comenExample))
	if len(res) != 1 || res[0].err != nil {
		t.Fatalf("%+v", res)
	}
	return res[0].msg
}

func TestACKExactBytes(t *testing.T) {
	m := comenMessage(t)
	tests := []struct {
		name   string
		code   AckCode
		reason string
		now    time.Time
		want   string
	}{
		{
			"AA", AA, "", testNow,
			"\x0bMSH|^~\\&|VIGIL||NC_Monitor|KC261551373G|20260301120000+0000||ACK^R01^ACK|202506100151270003|P|2.6\r" +
				"MSA|AA|202506100151270003\r\x1c\r",
		},
		{
			"AE with a reason, in the clock's zone", AE, "hl7: message from an unexpected sender: MSH-4",
			time.Date(2025, 6, 10, 1, 51, 28, 0, time.FixedZone("", 8*3600)),
			"\x0bMSH|^~\\&|VIGIL||NC_Monitor|KC261551373G|20250610015128+0800||ACK^R01^ACK|202506100151270003|P|2.6\r" +
				"MSA|AE|202506100151270003|hl7: message from an unexpected sender: MSH-4\r" +
				"ERR|||207^Application internal error^HL70357|E||||hl7: message from an unexpected sender: MSH-4\r\x1c\r",
		},
		{
			"AR", AR, "unsupported", testNow,
			"\x0bMSH|^~\\&|VIGIL||NC_Monitor|KC261551373G|20260301120000+0000||ACK^R01^ACK|202506100151270003|P|2.6\r" +
				"MSA|AR|202506100151270003|unsupported\r" +
				"ERR|||200^Unsupported message type^HL70357|E||||unsupported\r\x1c\r",
		},
		{
			"reason escaped and cleaned", AE, "a|b^c~d\\e&f\r\ng", testNow,
			"\x0bMSH|^~\\&|VIGIL||NC_Monitor|KC261551373G|20260301120000+0000||ACK^R01^ACK|202506100151270003|P|2.6\r" +
				"MSA|AE|202506100151270003|a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\fg\r" +
				"ERR|||207^Application internal error^HL70357|E||||a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\fg\r\x1c\r",
		},
		{
			"unknown code sent as AE", AckCode("CA"), "x", testNow,
			"\x0bMSH|^~\\&|VIGIL||NC_Monitor|KC261551373G|20260301120000+0000||ACK^R01^ACK|202506100151270003|P|2.6\r" +
				"MSA|AE|202506100151270003|x\r" +
				"ERR|||207^Application internal error^HL70357|E||||x\r\x1c\r",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(ACK(m, tt.code, tt.reason, tt.now)); got != tt.want {
				t.Fatalf("ACK\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestACKAddressing(t *testing.T) {
	// MSH-5/6 become the ACK's sender, MSH-3/4 its receiver; version,
	// processing id and trigger are the message's.
	msg := "MSH|^~\\&|MON|BED\\S\\7|CIS|WARD|20260301120000||ORU^R01|X1|T|2.3.1\n" + obx("150456^^MDC", "97", "%")
	res := feedMessages(mllp(msg))
	if len(res) != 1 || res[0].err != nil {
		t.Fatalf("%+v", res)
	}
	got := string(ACK(res[0].msg, AE, "no", testNow))
	want := "\x0bMSH|^~\\&|CIS|WARD|MON|BED\\S\\7|20260301120000+0000||ACK^R01^ACK|X1|T|2.3.1\r" +
		"MSA|AE|X1|no\r" +
		"ERR|^^^207&Application internal error&HL70357\r\x1c\r" // v2.3.1: ERR-1 only
	if got != want {
		t.Fatalf("ACK\n got %q\nwant %q", got, want)
	}

	// No message at all (its header was unreadable): empty MSA-2, a control
	// id from the clock, defaults for the rest.
	got = string(ACK(nil, AE, "hl7: message does not start with an MSH segment", testNow))
	want = "\x0bMSH|^~\\&|VIGIL||||20260301120000+0000||ACK^R01^ACK|VIGIL20260301120000.000|P|2.6\r" +
		"MSA|AE||hl7: message does not start with an MSH segment\r" +
		"ERR|||207^Application internal error^HL70357|E||||hl7: message does not start with an MSH segment\r\x1c\r"
	if got != want {
		t.Fatalf("ACK(nil)\n got %q\nwant %q", got, want)
	}
}

func TestACKReasonLength(t *testing.T) {
	m := comenMessage(t)
	reason := strings.Repeat("é", 200) // 400 bytes
	got := string(ACK(m, AE, reason, testNow))
	msa := strings.Split(strings.Split(got, "\rMSA|")[1], "\r")[0]
	err := strings.Split(strings.Split(got, "\rERR|")[1], "\r")[0]
	if want := "AE|202506100151270003|" + strings.Repeat("é", 40); msa != want {
		t.Fatalf("MSA %q", msa)
	}
	if want := "||207^Application internal error^HL70357|E||||" + strings.Repeat("é", 125); err != want {
		t.Fatalf("ERR %q", err)
	}
}

// The ACKs a Feed decoder queues are the ACK function's bytes.
func TestFeedQueuesACKs(t *testing.T) {
	d := NewDecoder(Config{Sender: "KC261551373G", ACKs: true})
	d.Feed(mllp(comenExample), testNow, drivertest.Discard)
	want := ACK(comenMessage(t), AA, "", testNow)
	if got := d.TakeReplies(nil); string(got) != string(want) {
		t.Fatalf("queued\n got %q\nwant %q", got, want)
	}
	if got := d.TakeReplies(nil); len(got) != 0 {
		t.Fatalf("queue not emptied: %q", got)
	}

	// A message whose header is unreadable: AE with an empty MSA-2.
	d.Feed(mllp("PID|||1\n"), testNow, drivertest.Discard)
	if got := string(d.TakeReplies(nil)); !strings.Contains(got, "\rMSA|AE||hl7: message does not start with an MSH segment (segment 1)\r") {
		t.Fatalf("no-MSH reply %q", got)
	}
	// An unsupported type: AR with the control id.
	d.Feed(mllp("MSH|^~\\&|A|B|||20260301120000||QRY^R02|Q7|P|2.3.1\n"), testNow, drivertest.Discard)
	if got := string(d.TakeReplies(nil)); !strings.Contains(got, "\rMSA|AR|Q7|") || !strings.Contains(got, "|ACK^R02^ACK|") {
		t.Fatalf("unsupported reply %q", got)
	}
	// Framing problems are not messages: nothing to acknowledge.
	d.Feed([]byte("garbage\x0b"), testNow, drivertest.Discard)
	if got := d.TakeReplies(nil); len(got) != 0 {
		t.Fatalf("garbage answered: %q", got)
	}

	// Without ACKs in the Config nothing is queued.
	d = NewDecoder(Config{})
	d.Feed(mllp(comenExample), testNow, drivertest.Discard)
	if got := d.TakeReplies(nil); len(got) != 0 {
		t.Fatalf("queued without ACKs: %q", got)
	}

	// The queue is bounded when nobody takes it.
	d = NewDecoder(Config{ACKs: true})
	msg := mllp(comenExample)
	for range 2000 {
		d.Feed(msg, testNow, drivertest.Discard)
	}
	if n := len(d.TakeReplies(nil)); n > maxPendingReplies+len(want) {
		t.Fatalf("queue grew to %d bytes", n)
	}
}

func TestWantsACK(t *testing.T) {
	tests := []struct {
		accept, app string
		aa, ae      bool
	}{
		{"", "", true, true}, // original mode
		{"AL", "", true, true},
		{"NE", "", false, false},
		{"", "NE", false, false},
		{"AL", "ER", false, true},
		{"NE", "SU", true, false},
		{"ER", "", false, true},
		{"XX", "", true, true},
	}
	for _, tt := range tests {
		m := &Message{AcceptAckType: tt.accept, ApplicationAckType: tt.app}
		if m.WantsACK(AA) != tt.aa || m.WantsACK(AE) != tt.ae || m.WantsACK(AR) != tt.ae {
			t.Errorf("MSH-15 %q MSH-16 %q: AA %v AE %v", tt.accept, tt.app, m.WantsACK(AA), m.WantsACK(AE))
		}
		// Feed's queue obeys the same rule.
		d := NewDecoder(Config{ACKs: true})
		msg := "MSH|^~\\&|A|B|||20260301120000||ORU^R01|1|P|2.6|||" + tt.accept + "|" + tt.app + "\n" + obx("150456^^MDC", "97", "%")
		d.Feed(mllp(msg), testNow, drivertest.Discard)
		if got := len(d.TakeReplies(nil)) > 0; got != tt.aa {
			t.Errorf("MSH-15 %q MSH-16 %q: Feed queued an AA: %v", tt.accept, tt.app, got)
		}
	}
	if !(*Message)(nil).WantsACK(AE) {
		t.Error("nil message: an error is always answered")
	}
}
