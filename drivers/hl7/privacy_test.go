package hl7

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// Patient fields never leave the decoder: not in a reading, a Message, an
// unknown observation, an error or an ACK, whether the message is good or
// refused. PID and the other patient segments are skipped unread.
func TestNoPatientDataInAnyOutput(t *testing.T) {
	const (
		pidID   = "PATID4711"
		name    = "Zyxwvut"
		given   = "Qwertyuio"
		dob     = "19450817"
		address = "Elmstreet"
		nok     = "Kinsperson"
	)
	secrets := []string{pidID, name, given, dob, address, nok}
	pid := "PID|1||" + pidID + "^^^HOSP^MR||" + name + "^" + given + "||" + dob + "|F|||1 " + address + "^^Town\n" +
		"NK1|1|" + nok + "^Anna|SPO\n" +
		"PV1||I|ICU^1^3||||||||||||||||" + pidID + "\n"
	messages := []string{
		// Good messages, PID before and after the observations.
		"MSH|^~\\&|MON|BED7|||20260301120000||ORU^R01|C1|P|2.6\n" + pid + "OBR|1|||x|||20260301120000\n" +
			obx("150456^^MDC", "97", "%") + obx("150344^MDC_TEMP^MDC", "37", "Cel"),
		"MSH|^~\\&|MON|BED7|||20260301120000||ORU^R01|C2|P|2.6\n" + obx("150456^^MDC", "97", "%") + pid,
		// A text observation holding patient data: reported by its code, never its value.
		"MSH|^~\\&|MON|BED7|||20260301120000||ORU^R01|C3|P|2.6\n" + pid + "OBX|1|ST|999^PATIENT_NAME^99X||" + name + "^" + given + "\n",
		// Refused messages: no MSH, a bad segment after PID, mixed equipment, unsupported type.
		pid + obx("150456^^MDC", "97", "%"),
		"MSH|^~\\&|MON|BED7|||20260301120000||ORU^R01|C4|P|2.6\n" + pid + "bad|" + name + "\n",
		"MSH|^~\\&|MON|BED7|||20260301120000||ORU^R01|C5|P|2.6\n" + pid +
			"OBX|1|NM|150456^^MDC||97|%|||||F|||||||A\nOBX|2|NM|150456^^MDC||97|%|||||F|||||||B\n",
		"MSH|^~\\&|MON|BED7|||20260301120000||ADT^A01|C6|P|2.6\n" + pid,
		// PID in garbage outside any block.
		"",
	}
	var outputs []string
	record := func(format string, args ...any) { outputs = append(outputs, fmt.Sprintf(format, args...)) }
	for _, msg := range messages {
		input := mllp(msg)
		if msg == "" {
			input = []byte(pid)
		}
		// Feed with a wrong sender, ACKs and callbacks on.
		for _, sender := range []string{"", "OTHER"} {
			d := NewDecoder(Config{Sender: sender, ACKs: true})
			d.OnUnknown(func(u UnknownObservation) { record("%+v %s", u, u.Key()) })
			d.OnRejected(func(err error) {
				var e *Error
				errors.As(err, &e)
				record("%v %+v %#v", err, e, e)
			})
			s := &drivertest.Recorder{}
			d.Feed(input, testNow, s)
			for _, r := range s.Readings {
				record("%+v %#v", r, r)
			}
			record("%q", d.TakeReplies(nil))
		}
		NewDecoder(Config{}).FeedMessages(input, testNow, func(m *Message, err error) {
			record("%+v %#v %v", m, m, err)
			if m != nil {
				record("%+v", *m)
				for _, code := range []AckCode{AA, AE, AR} {
					reason := ""
					if err != nil {
						reason = err.Error()
					}
					record("%q", ACK(m, code, reason, testNow))
				}
			}
		})
	}
	if len(outputs) < 40 {
		t.Fatalf("only %d outputs recorded: the test is not looking", len(outputs))
	}
	for _, out := range outputs {
		for _, secret := range secrets {
			if strings.Contains(out, secret) {
				t.Fatalf("patient field %q leaked in %s", secret, out)
			}
		}
	}
}
