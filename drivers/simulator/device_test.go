package simulator

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.bug.st/serial"
	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/drivers"
)

// running starts d.Run and returns a stop function that cancels it, checks
// it returned nil and closes the device.
func running(t *testing.T, d *Device) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeviceStreamsFramesToHost(t *testing.T) {
	var steps []string
	var mu sync.Mutex
	d, err := NewDevice(Options{
		Driver:   lineDriver(time.Second),
		Scenario: steady(true, time.Hour),
		Rate:     50,
		OnStep: func(st Step) {
			mu.Lock()
			steps = append(steps, st.Name)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, d)
	h := openHost(t, d.Path())
	var prev time.Time
	for i := range 20 {
		f, err := h.frame(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if f.SpO2 != 96 || f.Pulse != 64 || f.PI != 2.75 || f.Flags != "-" {
			t.Fatalf("frame %d = %+v", i, f)
		}
		if !prev.IsZero() {
			// Frames are stamped with their schedule, 20 ms apart; the
			// millisecond truncation of the line format blurs it by 1 ms.
			// A starved player skips frames, so any multiple of 20 ms.
			gap := f.Time.Sub(prev).Milliseconds()
			if r := gap % 20; gap < 19 || (r > 1 && r < 19) {
				t.Errorf("frame %d comes %d ms after the one before, want a multiple of 20 ms", i, gap)
			}
		}
		prev = f.Time
	}
	if idx, name := d.CurrentStep(); idx != 0 || name != "steady" {
		t.Errorf("CurrentStep = %d %q", idx, name)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(steps) != 1 || steps[0] != "steady" {
		t.Errorf("OnStep calls: %v", steps)
	}
	if d.Path() != "" {
		t.Errorf("Path after Close = %q", d.Path())
	}
	if st := d.Stats(); st.Frames < 20 || st.Bytes == 0 {
		t.Errorf("stats %+v", st)
	}
	if err := d.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestRunStopsAndCloseReleasesEverything(t *testing.T) {
	defer goleak.VerifyNone(t)
	link := filepath.Join(t.TempDir(), "pulseox")
	d, err := NewDevice(Options{Driver: lineDriver(10 * time.Millisecond), Scenario: steady(true, time.Minute), Link: link})
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != d.Path() {
		t.Fatalf("link points at %q (%v), want %q", target, err, d.Path())
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	eventually(t, "the first step", func() bool { i, _ := d.CurrentStep(); return i == 0 })
	if err := d.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	h := openHost(t, link)
	if _, err := h.frame(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link still there after Close: %v", err)
	}
	// The host sees the device gone.
	buf := make([]byte, 64)
	var rerr error
	for rerr == nil {
		_, rerr = h.port.Read(buf)
	}
	var pe *serial.PortError
	if !errors.As(rerr, &pe) || pe.Code() != serial.PortClosed {
		t.Errorf("host read after Close: %v", rerr)
	}
	_ = h.port.Close()
}

func TestCloseStopsRun(t *testing.T) {
	d, err := NewDevice(Options{Driver: lineDriver(time.Second), Scenario: steady(true, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(context.Background()) }()
	eventually(t, "Run to start", func() bool { i, _ := d.CurrentStep(); return i == 0 })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop Run")
	}
}

func TestNonLoopingScenarioEnds(t *testing.T) {
	s := steady(false, 300*time.Millisecond)
	s.Steps = append(s.Steps, Step{Name: "second", Duration: 200 * time.Millisecond})
	d, err := NewDevice(Options{Driver: lineDriver(10 * time.Millisecond), Scenario: s})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	errc := make(chan error, 1)
	go func() { errc <- d.Run(context.Background()) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end with the scenario")
	}
	if i, name := d.CurrentStep(); i != 1 || name != "second" {
		t.Errorf("last step %d %q", i, name)
	}
	// Nobody had the port open: every frame was dropped, none queued.
	if st := d.Stats(); st.Frames != 0 || st.Discarded == 0 {
		t.Errorf("stats %+v", st)
	}
}

// A real device's bytes are lost while nothing listens; a pty would keep
// them for the next host, which would then read stale frames as live ones.
func TestNoStaleFramesForALateHost(t *testing.T) {
	d, err := NewDevice(Options{Driver: lineDriver(time.Second), Scenario: steady(true, time.Hour), Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	running(t, d)
	eventually(t, "frames dropped while no host", func() bool { return d.Stats().Discarded >= 100 })

	for round := range 2 {
		opened := time.Now()
		h := openHost(t, d.Path())
		f, err := h.frame(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Frames queued while nobody listened would be a second older than
		// the open; fresh ones are one period (10 ms) older, or up to
		// burstWindow (100 ms) when the player is starved of CPU.
		if age := opened.Sub(f.Time); age > 500*time.Millisecond {
			t.Fatalf("round %d: first frame is %v older than the open: stale", round, age)
		}
		// Leave unread bytes behind and go away.
		time.Sleep(100 * time.Millisecond)
		if err := h.port.Close(); err != nil {
			t.Fatal(err)
		}
		before := d.Stats().Discarded
		eventually(t, "frames dropped after the host left", func() bool { return d.Stats().Discarded >= before+100 })
	}
}

func TestHostWritesAreDrained(t *testing.T) {
	var got atomic.Int64
	d, err := NewDevice(Options{
		Driver:      lineDriver(time.Second),
		Scenario:    steady(true, time.Hour),
		OnHostWrite: func(p []byte) { got.Add(int64(len(p))) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := openHost(t, d.Path())
	// Far more than a pty buffers (about 20 KB): without the drain, Write
	// would block forever.
	msg := make([]byte, 256<<10)
	for i := range msg {
		msg[i] = byte(i)
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.port.Write(msg)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("host write blocked")
	}
	eventually(t, "all host bytes", func() bool { return got.Load() == int64(len(msg)) })
}

func TestUnplugRepointsTheLink(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ttyPulseOx")
	s := steady(false, time.Second)
	s.Steps = append(s.Steps,
		Step{Name: "unplugged", Duration: 1500 * time.Millisecond, Unplug: true},
		Step{Name: "back", Duration: time.Hour, Values: map[drivers.MetricID]float64{drivers.SpO2: 91}},
	)
	d, err := NewDevice(Options{Driver: lineDriver(time.Second), Scenario: s, Rate: 20, Link: link})
	if err != nil {
		t.Fatal(err)
	}
	first := d.Path()
	running(t, d)
	h := openHost(t, link)
	f, err := h.frame(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f.SpO2 != 96 {
		t.Fatalf("before unplug: %+v", f)
	}
	// Read until the port goes away under the host.
	var rerr error
	for rerr == nil {
		_, rerr = h.line(5 * time.Second)
	}
	var pe *serial.PortError
	if !errors.As(rerr, &pe) || pe.Code() != serial.PortClosed {
		t.Fatalf("host read at unplug: %v, want PortClosed", rerr)
	}
	_ = h.port.Close()
	eventually(t, "the link to vanish", func() bool {
		_, err := os.Lstat(link)
		return errors.Is(err, os.ErrNotExist)
	})
	if d.Path() != "" {
		t.Errorf("Path while unplugged = %q", d.Path())
	}
	eventually(t, "the link to come back", func() bool {
		_, err := os.Stat(link)
		return err == nil
	})
	h2 := openHost(t, link)
	f, err = h2.frame(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f.SpO2 != 91 || f.Pulse != 64 {
		t.Errorf("after replug: %+v", f)
	}
	target, err := os.Readlink(link)
	if err != nil || target != d.Path() {
		t.Errorf("link points at %q (%v), device at %q (first pty %q)", target, err, d.Path(), first)
	}
	if st := d.Stats(); st.Unplugs != 1 {
		t.Errorf("unplugs = %d", st.Unplugs)
	}
}

func TestGarbageAndSilenceOverThePty(t *testing.T) {
	s := steady(false, 500*time.Millisecond)
	s.Steps = append(s.Steps,
		Step{Name: "noisy", Duration: time.Second, Garbage: 12},
		Step{Name: "quiet", Duration: time.Second, Silent: true},
		Step{Name: "clean", Duration: time.Hour},
	)
	d, err := NewDevice(Options{Driver: lineDriver(time.Second), Scenario: s, Rate: 50, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	h := openHost(t, d.Path())
	running(t, d)
	var frames, junk int
	var prev time.Time
	var longestGap time.Duration
	for frames < 100 {
		l, err := h.line(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parseLine(l)
		if err != nil {
			junk++
			if len(l) != 12 {
				t.Errorf("garbage line of %d bytes, want 12", len(l))
			}
			continue
		}
		frames++
		if f.SpO2 != 96 {
			t.Fatalf("frame %+v", f)
		}
		if !prev.IsZero() && f.Time.Sub(prev) > longestGap {
			longestGap = f.Time.Sub(prev)
		}
		prev = f.Time
	}
	// One garbage line per frame of the noisy second: about 50, fewer if
	// a starved player skipped frames.
	if junk < 20 || junk > 60 {
		t.Errorf("%d garbage lines, want about 50", junk)
	}
	// The silent second shows as a gap in the frames' own timestamps
	// (longer only if frames around it were skipped).
	if longestGap < 900*time.Millisecond || longestGap > 3*time.Second {
		t.Errorf("longest gap between frames %v, want about 1s", longestGap)
	}
}

func TestSpeedPlaysTheScenarioFaster(t *testing.T) {
	s := steady(false, 2*time.Second)
	s.Steps = append(s.Steps, Step{Name: "low", Duration: 2 * time.Second, Values: map[drivers.MetricID]float64{drivers.SpO2: 88}})
	d, err := NewDevice(Options{Driver: lineDriver(time.Second), Scenario: s, Rate: 50, Speed: 10})
	if err != nil {
		t.Fatal(err)
	}
	h := openHost(t, d.Path())
	running(t, d)
	var first, last lineFrame
	var n int
	for {
		f, err := h.frame(time.Second)
		if err != nil {
			break // the scenario (0.4 s of wall time) is over
		}
		if n == 0 {
			first = f
		}
		last = f
		n++
	}
	if n < 10 || first.SpO2 != 96 || last.SpO2 != 88 {
		t.Errorf("%d frames, first %+v, last %+v", n, first, last)
	}
	// 4 scenario seconds at speed 10 take 0.4 s of frames' wall-clock times.
	if span := last.Time.Sub(first.Time); span > time.Second {
		t.Errorf("frames span %v of wall time, want about 0.4s", span)
	}
}

func TestNewDeviceRejectsBadOptions(t *testing.T) {
	noEnc := &drivers.Driver{Name: "x", NewDecoder: func(drivers.Options) (drivers.Decoder, error) { return nil, nil }}
	failing := lineDriver(time.Second)
	failing.NewEncoder = func(drivers.Options) (drivers.Encoder, error) { return nil, errors.New("bad option") }
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ok := steady(true, time.Second)
	for name, o := range map[string]Options{
		"no driver":        {Scenario: ok},
		"no encoder":       {Driver: noEnc, Scenario: ok},
		"encoder fails":    {Driver: failing, Scenario: ok},
		"no scenario":      {Driver: lineDriver(time.Second)},
		"invalid scenario": {Driver: lineDriver(time.Second), Scenario: &Scenario{Name: "x"}},
		"negative rate":    {Driver: lineDriver(time.Second), Scenario: ok, Rate: -1},
		"NaN rate":         {Driver: lineDriver(time.Second), Scenario: ok, Rate: math.NaN()},
		"huge rate":        {Driver: lineDriver(time.Second), Scenario: ok, Rate: 1e9},
		"no interval":      {Driver: lineDriver(0), Scenario: ok},
		"bad speed":        {Driver: lineDriver(time.Second), Scenario: ok, Speed: -2},
		"link is a file":   {Driver: lineDriver(time.Second), Scenario: ok, Link: regular},
		"link dir missing": {Driver: lineDriver(time.Second), Scenario: ok, Link: filepath.Join(regular, "sub", "link")},
	} {
		d, err := NewDevice(o)
		if err == nil {
			d.Close()
			t.Errorf("%s: NewDevice accepted", name)
		}
		if name == "no encoder" && !errors.Is(err, ErrNoEncoder) {
			t.Errorf("no encoder: %v, want ErrNoEncoder", err)
		}
	}
	if fi, err := os.Lstat(regular); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the regular file at the link path was replaced: %v %v", fi, err)
	}
}

// A stale symlink from an earlier run is replaced, and a device whose first
// step is an unplug starts absent.
func TestLinkReplacedAndStartUnplugged(t *testing.T) {
	link := filepath.Join(t.TempDir(), "dev")
	if err := os.Symlink("/dev/pts/nonexistent", link); err != nil {
		t.Fatal(err)
	}
	d, err := NewDevice(Options{Driver: lineDriver(time.Second), Scenario: steady(true, time.Minute), Link: link})
	if err != nil {
		t.Fatal(err)
	}
	if target, _ := os.Readlink(link); target != d.Path() {
		t.Errorf("stale link not replaced: %q", target)
	}
	d.Close()
	if err := os.Symlink("/dev/pts/nonexistent", link); err != nil {
		t.Fatal(err)
	}

	s := &Scenario{Name: "late", Steps: []Step{
		{Name: "absent", Duration: 300 * time.Millisecond, Unplug: true},
		{Name: "present", Duration: time.Hour, Values: map[drivers.MetricID]float64{drivers.SpO2: 93}},
	}}
	d, err = NewDevice(Options{Driver: lineDriver(time.Second), Scenario: s, Rate: 20, Link: link})
	if err != nil {
		t.Fatal(err)
	}
	if d.Path() != "" {
		t.Errorf("starts plugged: %q", d.Path())
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link exists before the device is plugged in: %v", err)
	}
	running(t, d)
	eventually(t, "the device to appear", func() bool { _, err := os.Stat(link); return err == nil })
	h := openHost(t, link)
	if f, err := h.frame(5 * time.Second); err != nil || f.SpO2 != 93 {
		t.Errorf("frame %+v, %v", f, err)
	}
}
