package suntech

import (
	"testing"
	"time"
)

// TestModuleAnswers pins the emulator's answer to each command, so the
// conversation tests rest on known module behaviour.
func TestModuleAnswers(t *testing.T) {
	m := &Module{Result: akgitResult, Duration: 10 * time.Second, StatusWord: 7}
	at := func(d time.Duration) time.Time { return testNow.Add(d) }
	steps := []struct {
		name string
		host []byte
		when time.Duration
		want []byte
	}{
		{"status", AppendGetModuleStatus(nil), 0, AppendPressureReply(nil, 7)},
		{"idle pressure", AppendGetCuffPressure(nil), 0, AppendPressureReply(nil, 0)},
		{"fetch before any determination", AppendGetBPData(nil), 0, AppendResultReply(nil, Result{})},
		{"start", AppendStart(nil, PatientAdult), 0, AppendStatusReply(nil, 'O')},
		{"start while measuring", AppendStart(nil, PatientNeonatal), time.Second, AppendStatusReply(nil, 'B')},
		{"pressure at the peak (a fifth of the way)", AppendGetCuffPressure(nil), 2 * time.Second, AppendPressureReply(nil, DefaultPeakPressure)},
		{"pressure half way down", AppendGetCuffPressure(nil), 6 * time.Second, AppendPressureReply(nil, DefaultPeakPressure/2)},
		{"fetch while measuring", AppendGetBPData(nil), 6 * time.Second, AppendStatusReply(nil, 'B')},
		{"K unasked when done", nil, 10 * time.Second, AppendStatusReply(nil, 'K')},
		{"fetch", AppendGetBPData(nil), 10 * time.Second, AppendResultReply(nil, akgitResult)},
		{"abort", AppendAbort(nil), 11 * time.Second, cat(AppendStatusReply(nil, 'A'), AppendStatusReply(nil, 'K'))},
		{"two commands and a half", cat(AppendGetCuffPressure(nil), AppendReset(nil), []byte{0x3A, 0x79}), 11 * time.Second,
			cat(AppendPressureReply(nil, 0), AppendStatusReply(nil, 'K'))},
		{"the other half", []byte{0x05, 0x00, 0x48}, 11 * time.Second, AppendPressureReply(nil, 0)},
		{"bad checksum", []byte{0x3A, 0x20, 0xA7}, 11 * time.Second, AppendStatusReply(nil, 'E')},
		{"unknown command", []byte{0x3A, 0x99}, 11 * time.Second, AppendStatusReply(nil, 'D')},
		{"unknown 79 sub-command", AppendHostPacket(nil, 0x79, 0x42, 0x00), 11 * time.Second, AppendStatusReply(nil, 'N')},
		{"undocumented reply: set inflation", AppendSetInitialInflation(nil, 160), 11 * time.Second, AppendStatusReply(nil, 'K')},
		{"garbage only", []byte{0x00, 0x3E, 0xFF}, 11 * time.Second, nil},
	}
	for _, s := range steps {
		got := m.Exchange(s.host, at(s.when))
		if hexOf(got) != hexOf(s.want) {
			t.Fatalf("%s: got % X, want % X", s.name, got, s.want)
		}
	}
	if m.Starts != 2 || m.Fetches != 3 || m.Aborts != 1 || m.StatusQueries != 1 || m.Polls != 5 {
		t.Fatalf("counters %+v", m)
	}
}

func TestModuleFaults(t *testing.T) {
	m := &Module{Noise: []byte{0xAA}, CorruptReplies: 1, DropReplies: 1}
	poll := AppendGetCuffPressure(nil)
	if got := m.Exchange(poll, testNow); got != nil {
		t.Fatalf("dropped reply sent % X", got)
	}
	want := cat([]byte{0xAA}, AppendPressureReply(nil, 0))
	want[len(want)-1]++
	if got := m.Exchange(poll, testNow); hexOf(got) != hexOf(want) {
		t.Fatalf("corrupted: % X, want % X", got, want)
	}
	if got := m.Exchange(poll, testNow); hexOf(got) != "AA3E050000BD" {
		t.Fatalf("noisy: % X", got)
	}
	m.Mute = true
	if got := m.Exchange(AppendStart(nil, PatientAdult), testNow); got != nil || !m.Measuring() {
		t.Fatalf("mute module: % X, measuring %v (it still obeys)", got, m.Measuring())
	}
}
