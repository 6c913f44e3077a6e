package mqtt

import (
	"strings"
	"testing"
)

func TestParseSessionCommand(t *testing.T) {
	cases := []struct {
		payload string
		want    SessionCommand
		err     string
	}{
		{`{"command":"start","route":"iv","by":"RN Kim"}`, SessionCommand{Name: "start", Route: "iv", By: "RN Kim"}, ""},
		{`{"command":"start","by":"RN Kim"}`, SessionCommand{Name: "start", By: "RN Kim"}, ""},
		{`{"command":"dose","by":"RN Kim"}`, SessionCommand{Name: "dose", By: "RN Kim"}, ""},
		{`{"command":"end","by":"RN Kim"}`, SessionCommand{Name: "end", By: "RN Kim"}, ""},
		{`{"command":"start","by":"RN Kim","clinic_ref":"MRN-1234"}`, SessionCommand{}, `"clinic_ref" is refused over MQTT`},
		{`{"command":"start"}`, SessionCommand{}, `"by" is required`},
		{`{"command":"start","by":"x","route":5}`, SessionCommand{}, `"route" is not a string`},
		{`{"command":"pause","by":"x"}`, SessionCommand{}, `unknown session command`},
	}
	for _, c := range cases {
		pc, err := parseCommand([]byte(c.payload))
		if err != nil {
			t.Fatalf("%s: %v", c.payload, err)
		}
		got, err := parseSessionCommand(pc)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.payload, err, c.err)
			}
			if strings.Contains(c.payload, "MRN") && err != nil && strings.Contains(err.Error(), "MRN") {
				t.Errorf("the refusal quotes the clinic reference: %v", err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.payload, got, err, c.want)
		}
	}
}
