package mqtt

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
)

func TestParseAlarmCommand(t *testing.T) {
	long := strings.Repeat("é", 65)
	cases := []struct {
		payload string
		want    AlarmCommand
		err     string
	}{
		{`{"command":"ack","alarm":"spo2-low-medium/ox1","by":"RN Kim"}`, AlarmCommand{Name: "ack", Alarm: "spo2-low-medium/ox1", By: "RN Kim"}, ""},
		{`{"command":"pause","by":"RN Kim","for":"90s"}`, AlarmCommand{Name: "pause", By: "RN Kim", For: 90 * time.Second}, ""},
		{`{"command":"pause","by":"RN Kim"}`, AlarmCommand{Name: "pause", By: "RN Kim"}, ""},
		{`{"command":"resume","by":"RN Kim"}`, AlarmCommand{Name: "resume", By: "RN Kim"}, ""},
		{`{"command":"ack","alarm":"x"}`, AlarmCommand{}, `"by" is required`},
		{`{"command":"ack","alarm":"x","by":null}`, AlarmCommand{}, `"by" is required`},
		{`{"command":"ack","alarm":"x","by":7}`, AlarmCommand{}, `"by" is not a string`},
		{`{"command":"ack","alarm":"x","by":"` + long + `"}`, AlarmCommand{}, `longer than 64`},
		{`{"command":"ack","by":"RN Kim"}`, AlarmCommand{}, `"alarm" is required`},
		{`{"command":"ack","alarm":["x"],"by":"RN Kim"}`, AlarmCommand{}, `"alarm" is not a string`},
		{`{"command":"pause","by":"RN Kim","for":"-1m"}`, AlarmCommand{}, `positive duration`},
		{`{"command":"pause","by":"RN Kim","for":"soon"}`, AlarmCommand{}, `positive duration`},
		{`{"command":"pause","by":"RN Kim","for":120}`, AlarmCommand{}, `"for" is not a string`},
		{`{"command":"silence","by":"RN Kim"}`, AlarmCommand{}, `unknown alarm command`},
	}
	for _, c := range cases {
		pc, err := parseCommand([]byte(c.payload))
		if err != nil {
			t.Fatalf("%s: parseCommand: %v", c.payload, err)
		}
		got, err := parseAlarmCommand(pc)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.payload, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.payload, got, err, c.want)
		}
	}
}

// TestAlarmCommandsMosquitto: commands on .../alarms/cmd reach
// OnAlarmCommand, not OnCommand, and get their result on
// .../alarms/cmd/result; a refusal by the handler is the result's error.
func TestAlarmCommandsMosquitto(t *testing.T) {
	mosq := testbroker.StartMosquitto(t)
	results := subscribe(t, mosq.URL(), commandResults, "")
	sender := newCommandSender(t, mosq.URL())

	var (
		mu   sync.Mutex
		got  []AlarmCommand
		devs []string
	)
	p, err := New(Options{
		URL: mosq.URL(), Site: testSite, Room: testRoom, Version: "test-1.0",
		ClientID: "vigil-test-alarm-commands",
		Logger:   testLogger(t),
		OnCommand: func(device, command string) error {
			mu.Lock()
			defer mu.Unlock()
			devs = append(devs, device+" "+command)
			return nil
		},
		OnAlarmCommand: func(c AlarmCommand) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, c)
			if c.Alarm == "unknown/ox1" {
				return errors.New("unknown alarm")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	awaitCommands(t, sender, results, "alarms")

	sender.publish(cmdTopic(AlarmsTopicLevel), false, `{"command":"ack","alarm":"spo2-low-medium/ox1","by":"RN Kim","id":"k1"}`)
	m, r := resultFor(t, results, "k1")
	if m.Topic != resultTopic(AlarmsTopicLevel) || !r.OK || *r.Command != "ack" {
		t.Errorf("ack result %s %s", m.Topic, m.Payload)
	}
	sender.publish(cmdTopic(AlarmsTopicLevel), false, `{"command":"ack","alarm":"unknown/ox1","by":"RN Kim","id":"k2"}`)
	if _, r := resultFor(t, results, "k2"); r.OK || *r.Error != "unknown alarm" {
		t.Errorf("refused ack: %+v", r)
	}
	sender.publish(cmdTopic(AlarmsTopicLevel), false, `{"command":"pause","for":"1m","id":"k3"}`)
	if _, r := resultFor(t, results, "k3"); r.OK || !strings.Contains(*r.Error, `"by" is required`) {
		t.Errorf("pause without by: %+v", r)
	}
	sender.publish(cmdTopic(AlarmsTopicLevel), false, `{"command":"pause","for":"1m","by":"RN Kim","id":"k4"}`)
	if _, r := resultFor(t, results, "k4"); !r.OK {
		t.Errorf("pause: %+v", r)
	}

	mu.Lock()
	defer mu.Unlock()
	want := []AlarmCommand{
		{Name: "ack", Alarm: "spo2-low-medium/ox1", By: "RN Kim"},
		{Name: "ack", Alarm: "unknown/ox1", By: "RN Kim"},
		{Name: "pause", By: "RN Kim", For: time.Minute},
	}
	if len(got) != len(want) {
		t.Fatalf("OnAlarmCommand calls %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, d := range devs {
		if strings.HasPrefix(d, AlarmsTopicLevel+" ") {
			t.Errorf("alarm command reached OnCommand: %s", d)
		}
	}
}
