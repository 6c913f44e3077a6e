package email

import (
	"bytes"
	"math"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

func testParams(t *testing.T) messageParams {
	t.Helper()
	from, err := mail.ParseAddress("Vigil <vigil@clinic.example>")
	if err != nil {
		t.Fatal(err)
	}
	to, err := mail.ParseAddress("nurse@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	return messageParams{From: from, To: []*mail.Address{to}, Date: testNow, Local: testLocal, Mailer: "vigil/test"}
}

// The event's strings cannot add headers: CR and LF in the text, room or
// device end up inside one header or one body line.
func TestMessageGuardsHeaderInjection(t *testing.T) {
	ev := spo2Event(alarm.PhaseStart)
	ev.Text = "*** spo2 low\r\nBcc: attacker@evil.example\r\n\r\nfake body"
	ev.Room = "room-1\nX-Injected: yes"
	ev.Device = "ox\r\nReply-To: attacker@evil.example"
	ev.Unit = "%\r\nCc: x@evil.example"
	m := parseMail(t, buildMessage(ev, testParams(t)).Raw)
	for _, h := range []string{"Bcc", "Cc", "X-Injected", "Reply-To"} {
		if v := m.header.Get(h); v != "" {
			t.Errorf("injected header %s: %q", h, v)
		}
	}
	if got := decodedSubject(t, m.header); got != "*** spo2 low  Bcc: attacker@evil.example    fake body" {
		t.Errorf("Subject %q: the text's line breaks must become spaces", got)
	}
	for _, want := range []string{"\nRoom: room-1 X-Injected: yes\n", "\nDevice: ox  Reply-To: attacker@evil.example\n", "\nValue: 84 %  Cc: x@evil.example\n"} {
		if !strings.Contains(m.body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.body)
		}
	}
}

func TestMessageHeaderEncoding(t *testing.T) {
	ev := spo2Event(alarm.PhaseStart)
	ev.Priority = alarm.Medium
	ev.Text = "** SpO₂ 84 % — Behandlungsraum Süd, " + strings.Repeat("sehr langer Raumname ", 6)
	p := testParams(t)
	p.From.Name = "Vigil Überwachung"
	raw := buildMessage(ev, p).Raw
	m := parseMail(t, raw) // checks 7-bit and line lengths

	headerPart := string(raw[:strings.Index(string(raw), "\r\n\r\n")])
	for _, line := range strings.Split(headerPart, "\r\n") {
		if len(line) > foldWidth+2 && !strings.HasPrefix(line, "Message-ID:") && !strings.HasPrefix(line, "In-Reply-To:") {
			t.Errorf("header line of %d characters not folded: %q", len(line), line)
		}
	}
	if !strings.Contains(m.header.Get("Subject"), "=?utf-8?q?") {
		t.Errorf("non-ASCII Subject not Q-encoded: %q", m.header.Get("Subject"))
	}
	want := strings.TrimSpace(ev.Text) // the trailing space is trimmed
	if got := decodedSubject(t, m.header); got != want {
		t.Errorf("Subject decodes to %q, want %q", got, want)
	}
	from, err := m.header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Vigil Überwachung" || from[0].Address != "vigil@clinic.example" {
		t.Errorf("From %q decodes to %v, %v", m.header.Get("From"), from, err)
	}
	if m.header.Get("X-Priority") != "" || m.header.Get("Importance") != "" {
		t.Errorf("a medium alarm is marked as high importance")
	}
	if !strings.HasPrefix(m.body, "** SpO₂ 84 % — Behandlungsraum Süd") || !strings.Contains(m.body, "\nPriority: ** medium\n") {
		t.Errorf("body does not carry the UTF-8 text and the medium marker:\n%s", m.body)
	}
}

func TestMessageSubjectMarker(t *testing.T) {
	tests := []struct {
		name   string
		change func(ev *alarm.Event)
		want   string
	}{
		{"text with the marker", func(ev *alarm.Event) {}, "*** spo2 84 % (limit: at or below 85 %), oximeter-1, room room-1: active"},
		{"text without the marker", func(ev *alarm.Event) { ev.Text = "spo2 84 %" }, "*** spo2 84 %"},
		{"text with another priority's marker", func(ev *alarm.Event) { ev.Priority = alarm.Low; ev.Text = "*** spo2 84 %" }, "* spo2 84 %"},
		{"unknown priority is sent as high", func(ev *alarm.Event) { ev.Priority = 0; ev.Text = "spo2 84 %" }, "*** spo2 84 %"},
		{"no text: composed from the fields", func(ev *alarm.Event) { ev.Text = "" }, "*** spo2 84 % (limit 85 %), oximeter-1, room room-1"},
		{"technical without text", func(ev *alarm.Event) {
			ev.Text, ev.Metric, ev.Value, ev.Limit, ev.Condition, ev.Priority = "", "", nil, nil, "sensor_off", alarm.Medium
		}, "** sensor_off, oximeter-1, room room-1"},
		{"looks like an encoded-word", func(ev *alarm.Event) { ev.Text = "*** =?utf-8?q?fake?=" }, "*** = ?utf-8?q?fake?="},
		{"acknowledged", func(ev *alarm.Event) { ev.Phase, ev.State = alarm.PhaseUpdate, alarm.Acknowledged }, "*** spo2 84 % (limit: at or below 85 %), oximeter-1, room room-1: active"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := spo2Event(alarm.PhaseStart)
			tt.change(&ev)
			m := parseMail(t, buildMessage(ev, testParams(t)).Raw)
			if got := decodedSubject(t, m.header); got != tt.want {
				t.Errorf("Subject %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMessageBodyEdgeCases(t *testing.T) {
	t.Run("technical alarm has no value lines", func(t *testing.T) {
		ev := spo2Event(alarm.PhaseStart)
		ev.Kind, ev.Metric, ev.Value, ev.Limit, ev.Unit, ev.Condition = alarm.Technical, "", nil, nil, "", "device_lost"
		m := parseMail(t, buildMessage(ev, testParams(t)).Raw)
		for _, absent := range []string{"\nValue:", "\nLimit:", "\nMetric:"} {
			if strings.Contains(m.body, absent) {
				t.Errorf("body has %q:\n%s", absent, m.body)
			}
		}
		if !strings.Contains(m.body, "\nCondition: device_lost\n") || !strings.Contains(m.body, "\nKind: technical\n") {
			t.Errorf("body lacks the technical condition:\n%s", m.body)
		}
	})
	t.Run("value that is not a number", func(t *testing.T) {
		ev := spo2Event(alarm.PhaseStart)
		nan := math.NaN()
		ev.Value = &nan
		m := parseMail(t, buildMessage(ev, testParams(t)).Raw)
		if !strings.Contains(m.body, "\nValue: not a number (NaN) %\n") {
			t.Errorf("body:\n%s", m.body)
		}
	})
	t.Run("ack link that is not http(s) is left out", func(t *testing.T) {
		ev := spo2Event(alarm.PhaseStart)
		ev.AckURL = "javascript:alert(1)"
		msg := buildMessage(ev, testParams(t))
		m := parseMail(t, msg.Raw)
		if !msg.AckOmitted || strings.Contains(m.body, "Acknowledge:") || strings.Contains(m.body, "javascript") {
			t.Errorf("omitted %v, body:\n%s", msg.AckOmitted, m.body)
		}
	})
	t.Run("no ack link when acknowledged", func(t *testing.T) {
		ev := spo2Event(alarm.PhaseUpdate)
		ev.State = alarm.Acknowledged
		m := parseMail(t, buildMessage(ev, testParams(t)).Raw)
		if strings.Contains(m.body, "Acknowledge:") || m.header.Get("X-Priority") != "" {
			t.Errorf("acknowledged alarm still asks for action:\n%s", m.body)
		}
	})
	t.Run("long lines are soft-wrapped and decode whole", func(t *testing.T) {
		ev := spo2Event(alarm.PhaseStart)
		ev.Room = strings.Repeat("r", 300)
		raw := buildMessage(ev, testParams(t)).Raw
		for _, line := range strings.Split(string(raw), "\r\n") {
			if len(line) > 998 {
				t.Fatalf("line of %d octets", len(line))
			}
		}
		m := parseMail(t, raw)
		if !strings.Contains(m.body, "\nRoom: "+ev.Room+"\n") {
			t.Errorf("long room not intact after decoding")
		}
	})
	t.Run("no event id: thread keyed by alarm and onset", func(t *testing.T) {
		a, b := spo2Event(alarm.PhaseStart), spo2Event(alarm.PhaseStart)
		a.EventID, b.EventID = "", ""
		b.Onset = b.Onset.Add(time.Hour)
		p := testParams(t)
		if buildMessage(a, p).MessageID == buildMessage(b, p).MessageID {
			t.Error("two occurrences without event id share a Message-ID")
		}
	})
	t.Run("pure: same input, same bytes", func(t *testing.T) {
		ev := spo2Event(alarm.PhaseEnd)
		p := testParams(t)
		if string(buildMessage(ev, p).Raw) != string(buildMessage(ev, p).Raw) {
			t.Error("buildMessage is not deterministic")
		}
	})
}

// writeHeader is the last guard: whatever a caller passes, a value cannot
// start a header of its own.
func TestWriteHeaderFlattensLineBreaks(t *testing.T) {
	var b bytes.Buffer
	writeHeader(&b, "Subject", "a\r\nBcc: x@evil.example\nc\rd")
	if got, want := b.String(), "Subject: a  Bcc: x@evil.example c d\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
