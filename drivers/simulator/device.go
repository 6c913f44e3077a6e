package simulator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Errors callers can branch on.
var (
	ErrClosed    = errors.New("simulator: device is closed")
	ErrRunning   = errors.New("simulator: device is already running")
	ErrNoEncoder = errors.New("simulator: driver has no encoder")
)

// MaxRate bounds Options.Rate. Far above any device (Nonin DF2 sends 75
// frames/s, protocols.md 1.2); enough for load tests of the agent.
const MaxRate = 100_000

// MaxSpeed bounds Options.Speed.
const MaxSpeed = 1000

const (
	// burstWindow is how far the player catches up after falling behind (a
	// blocked write, a paused process). Frames older than that are skipped,
	// as a real device's output during a stall is simply lost.
	burstWindow = 100 * time.Millisecond
	// writeTimeout bounds how long a write waits for a host that does not
	// read (the pty buffer, about 20 KB, is full); then the frames are
	// dropped and playback goes on. It also bounds how long Close waits.
	writeTimeout = 100 * time.Millisecond
	// hostPollInterval is how often the master is read again while no host
	// has the port open (reads fail with EIO until one does).
	hostPollInterval = 50 * time.Millisecond
)

// Options configure a simulated device.
type Options struct {
	Driver        *drivers.Driver // its NewEncoder renders the frames
	DriverOptions drivers.Options // passed to NewEncoder
	Scenario      *Scenario
	// Rate is frames per second; 0 uses the encoder's Interval, the real
	// device's pace.
	Rate float64
	// Speed plays the scenario faster (or slower) than real time: scenario
	// seconds per wall-clock second; 0 means 1. Frames still go out at Rate
	// per wall-clock second and carry wall-clock times.
	Speed float64
	// Link is an optional symlink path kept pointing at the current pty
	// slave, like a /dev/serial/by-id entry: it vanishes on unplug and comes
	// back, pointing at the new pty, when the device is plugged in again.
	Link string
	// Seed makes the noise reproducible: frame k's noise depends only on
	// (Seed, k).
	Seed uint64
	// DeviceSN is put in every frame for encoders that send a serial number.
	DeviceSN string
	Logger   *slog.Logger // nil discards
	// OnStep is called from Run's goroutine with a copy of each step as it
	// begins (again on every pass of a looping scenario), so a demo can
	// show the phase (Step.Describe); CurrentStep gives its index.
	OnStep func(step Step)
	// OnHostWrite receives what the host writes to the device. It is called
	// from the device's reader goroutine; p is only valid during the call.
	// Nil discards: either way the host's writes never block.
	OnHostWrite func(p []byte)
}

// Stats count what the device did since it was created.
type Stats struct {
	Frames    uint64 // frames written to a host
	Discarded uint64 // frames rendered but not delivered: no host had the port open, or the host did not read
	Skipped   uint64 // frames never rendered because the player fell more than burstWindow behind
	Bytes     uint64 // bytes written, garbage included
	Unplugs   uint64
}

// Device is a simulated serial device on a pseudo-terminal.
type Device struct {
	log *slog.Logger
	enc drivers.Encoder
	// resp answers the host for devices that are talked to (NIBP); nil for
	// devices that stream. respMu serializes the play loop and the drain.
	resp     drivers.Responder
	respMu   sync.Mutex
	scenario *Scenario
	pacing   pacing
	link     string
	sn       string
	onStep   func(Step)
	onHost   func([]byte)
	// delim ends garbage so a line-based decoder sees the garbage as one bad
	// line and still finds the next frame; empty for binary protocols.
	delim []byte

	closing chan struct{} // closed by Close; stops Run
	wg      sync.WaitGroup

	mu       sync.Mutex
	port     *devicePort // nil while unplugged or closed
	closed   bool
	runDone  chan struct{} // non-nil while Run runs
	step     int
	stepName string

	frames, discarded, skipped, bytes, unplugs atomic.Uint64
}

// devicePort is one incarnation of the pty: a new one after every unplug.
type devicePort struct {
	master *os.File
	slave  string
	done   chan struct{} // closed when the master is closed
	// hostSeen is the writer's last observation of a host; Run's goroutine only.
	hostSeen bool
}

// NewDevice creates the pty (and the link) and checks the options. The
// device sends nothing until Run.
func NewDevice(o Options) (*Device, error) {
	if err := checkPlayback(o.Driver, o.Scenario, o.Rate, o.Speed); err != nil {
		return nil, err
	}
	enc, err := newEncoder(o.Driver, o.DriverOptions)
	if err != nil {
		return nil, err
	}
	pc, err := newPacing(o.Driver, enc, o.Scenario, o.Rate, o.Speed, o.Seed)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{
		log:      log.With("scenario", o.Scenario.Name),
		enc:      enc,
		scenario: o.Scenario,
		pacing:   pc,
		link:     o.Link,
		sn:       o.DeviceSN,
		onStep:   o.OnStep,
		onHost:   o.OnHostWrite,
		closing:  make(chan struct{}),
		step:     -1,
	}
	if o.Driver.NewResponder != nil {
		if d.resp, err = o.Driver.NewResponder(o.DriverOptions); err != nil {
			return nil, fmt.Errorf("simulator: %s responder: %w", o.Driver.Name, err)
		}
	}
	d.delim = frameDelimiter(enc.Encode(nil, drivers.Frame{Time: time.Now(), Values: map[drivers.MetricID]float64{}}))
	if d.link != "" {
		fi, err := os.Lstat(d.link)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink == 0:
			return nil, fmt.Errorf("simulator: link %s exists and is not a symlink; not replacing it", d.link)
		case err == nil:
			// Left by an earlier run: it points at a pty that is gone.
			if err := os.Remove(d.link); err != nil {
				return nil, fmt.Errorf("simulator: remove stale link: %w", err)
			}
		}
	}
	// The first step may be an unplug: then the device starts absent.
	if m, _ := d.pacing.tl.at(0); !m.Unplug {
		p, err := d.openPort()
		if err != nil {
			return nil, err
		}
		d.port = p
	}
	return d, nil
}

// Path is the pty slave's path (/dev/pts/N) for a host to open; empty while
// the device is unplugged or closed. It changes after an unplug; Link does
// not.
func (d *Device) Path() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.port == nil {
		return ""
	}
	return d.port.slave
}

// Link is the symlink path from Options, "" when none.
func (d *Device) Link() string { return d.link }

// Scenario is the scenario the device plays.
func (d *Device) Scenario() *Scenario { return d.scenario }

// CurrentStep is the running step's index and name; -1 before Run.
func (d *Device) CurrentStep() (int, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.step, d.stepName
}

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	return Stats{
		Frames:    d.frames.Load(),
		Discarded: d.discarded.Load(),
		Skipped:   d.skipped.Load(),
		Bytes:     d.bytes.Load(),
		Unplugs:   d.unplugs.Load(),
	}
}

// Run plays the scenario from its start, sending frames at the rate, until
// ctx ends, Close is called, or a scenario that does not loop ends; it then
// returns nil and leaves the pty in place (Close removes it). It fails only
// when a new pty cannot be made after an unplug. One Run at a time; a later
// Run starts the scenario over.
func (d *Device) Run(ctx context.Context) error {
	d.mu.Lock()
	switch {
	case d.closed:
		d.mu.Unlock()
		return ErrClosed
	case d.runDone != nil:
		d.mu.Unlock()
		return ErrRunning
	}
	done := make(chan struct{})
	d.runDone = done
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.runDone = nil
		d.mu.Unlock()
		close(done)
	}()
	return d.play(ctx)
}

func (d *Device) play(ctx context.Context) error {
	pl := d.pacing.start()
	timer := time.NewTimer(0)
	defer timer.Stop()
	buf := make([]byte, 0, 4096)
	for {
		elapsed, m, entered := pl.look()
		if m.Ended {
			d.log.Info("scenario ended")
			return nil
		}
		if entered {
			d.enterStep(m)
		}
		switch plugged := d.currentPort() != nil; {
		case m.Unplug && plugged:
			d.unplug()
		case !m.Unplug && !plugged:
			if err := d.replug(); err != nil {
				return err
			}
		}

		buf = buf[:0]
		n, skipped := pl.render(elapsed, func(f drivers.Frame, garbage int) {
			f.DeviceSN = d.sn
			if d.resp != nil {
				// A device that is talked to says nothing of its own but
				// what its conversation calls for (a measurement ending).
				d.respMu.Lock()
				d.resp.SetFrame(f)
				buf = append(buf, d.resp.Exchange(nil, time.Now())...)
				d.respMu.Unlock()
				return
			}
			buf = pl.appendFrame(buf, d.enc, f, garbage, d.delim)
		})
		d.skipped.Add(skipped)
		if n > 0 {
			d.send(buf, n)
		}

		timer.Reset(pl.wake(elapsed) - time.Since(pl.startedAt))
		select {
		case <-ctx.Done():
			return nil
		case <-d.closing:
			return nil
		case <-timer.C:
		}
	}
}

func (d *Device) enterStep(m Moment) {
	d.mu.Lock()
	d.step, d.stepName = m.Step, m.StepName
	d.mu.Unlock()
	d.log.Info("scenario step", "step", m.Step+1, "name", m.StepName, "pass", m.Pass+1)
	if d.onStep != nil && m.Step >= 0 {
		d.onStep(d.pacing.tl.segments[m.Step].step)
	}
}

func (d *Device) currentPort() *devicePort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.port
}

// send writes one batch of n frames, or drops it when no host has the port
// open: a real device's bytes on an unconnected cable are lost, and a pty
// would instead queue them for the next host (doc.go).
func (d *Device) send(buf []byte, n uint64) {
	p := d.currentPort()
	if p == nil {
		return
	}
	if !hostAttached(p.master) {
		if p.hostSeen {
			p.hostSeen = false
			d.log.Debug("host closed the port", "path", p.slave)
			// Whatever the host left unread would reach the next host as
			// stale frames.
			if err := purgeSlaveInput(p.slave); err != nil {
				d.log.Debug("purge unread bytes", "path", p.slave, "err", err)
			}
		}
		d.discarded.Add(n)
		return
	}
	if !p.hostSeen {
		p.hostSeen = true
		d.log.Debug("host opened the port", "path", p.slave)
	}
	_ = p.master.SetWriteDeadline(time.Now().Add(writeTimeout))
	w, err := p.master.Write(buf)
	d.bytes.Add(uint64(w))
	if err != nil {
		d.discarded.Add(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			d.log.Debug("host is not reading; frames dropped", "frames", n, "written", w, "of", len(buf))
		} else {
			d.log.Warn("write to pty", "err", err)
		}
		return
	}
	d.frames.Add(n)
}

// openPort makes a new pty, starts draining what the host writes and points
// the link at it.
func (d *Device) openPort() (*devicePort, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	p := &devicePort{master: master, slave: slave, done: make(chan struct{})}
	if d.link != "" {
		if err := pointLink(d.link, slave); err != nil {
			_ = master.Close()
			return nil, err
		}
	}
	d.wg.Add(1)
	go d.drain(p)
	d.log.Info("device plugged in", "path", slave, "link", d.link)
	return p, nil
}

// closePort closes the master (a host's pending read fails: the port is
// gone) and removes the link when it still points at this pty.
func (d *Device) closePort(p *devicePort) error {
	if p == nil {
		return nil
	}
	close(p.done)
	err := p.master.Close()
	if d.link != "" {
		if target, lerr := os.Readlink(d.link); lerr == nil && target == p.slave {
			if rerr := os.Remove(d.link); rerr != nil && err == nil {
				err = rerr
			}
		}
	}
	return err
}

func (d *Device) unplug() {
	d.mu.Lock()
	p := d.port
	d.port = nil
	d.mu.Unlock()
	if err := d.closePort(p); err != nil {
		d.log.Warn("unplug", "err", err)
	}
	d.unplugs.Add(1)
	d.log.Info("device unplugged", "path", p.slave)
}

func (d *Device) replug() error {
	p, err := d.openPort()
	if err != nil {
		return fmt.Errorf("simulator: plug in again after unplug: %w", err)
	}
	d.mu.Lock()
	d.port = p
	d.mu.Unlock()
	return nil
}

// drain reads and hands over (or discards) what the host writes, so that a
// host talking to the device never blocks on a full pty buffer.
func (d *Device) drain(p *devicePort) {
	defer d.wg.Done()
	buf := make([]byte, 4096)
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		n, err := p.master.Read(buf)
		if n > 0 && d.onHost != nil {
			d.onHost(buf[:n])
		}
		if n > 0 && d.resp != nil {
			d.respMu.Lock()
			reply := d.resp.Exchange(buf[:n], time.Now())
			d.respMu.Unlock()
			if len(reply) > 0 {
				_ = p.master.SetWriteDeadline(time.Now().Add(writeTimeout))
				if _, werr := p.master.Write(reply); werr != nil {
					d.log.Debug("reply to host", "err", werr)
				}
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrClosed) {
			return
		}
		// EIO: no host has the slave open. The master cannot say when one
		// opens it (it polls POLLHUP all the while), so look again shortly.
		if !errors.Is(err, syscall.EIO) {
			d.log.Debug("read from pty", "err", err)
		}
		wait.Reset(hostPollInterval)
		select {
		case <-p.done:
			return
		case <-wait.C:
		}
	}
}

// Close stops Run, closes the pty and removes the link. A host reading the
// port sees it unplugged.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.closing)
	running := d.runDone
	d.mu.Unlock()
	if running != nil {
		<-running
	}
	d.mu.Lock()
	p := d.port
	d.port = nil
	d.mu.Unlock()
	err := d.closePort(p)
	d.wg.Wait()
	return err
}

// pointLink makes link point at target atomically: a new symlink under a
// temporary name renamed over the old one, so a host never finds the link
// missing or half-made.
func pointLink(link, target string) error {
	tmp := filepath.Join(filepath.Dir(link), fmt.Sprintf(".%s.%d.tmp", filepath.Base(link), os.Getpid()))
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("simulator: link: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("simulator: link: %w", err)
	}
	return nil
}

// frameDelimiter is the run of CR/LF bytes a sample frame ends with.
func frameDelimiter(frame []byte) []byte {
	i := len(frame)
	for i > 0 && (frame[i-1] == '\r' || frame[i-1] == '\n') {
		i--
	}
	return append([]byte(nil), frame[i:]...)
}

// appendGarbage appends n random bytes that are not a frame, then delim.
// Without a delimiter (binary protocols) any byte may appear; with one, the
// garbage avoids CR and LF so it stays a single bad line.
func appendGarbage(dst []byte, n int, rng *rand.Rand, delim []byte) []byte {
	for range n {
		b := byte(rng.UintN(256))
		if len(delim) > 0 && (b == '\r' || b == '\n') {
			b ^= 0x80
		}
		dst = append(dst, b)
	}
	return append(dst, delim...)
}

// checkPlayback checks what Options and TCPOptions share before an encoder
// is made: a driver that has one, a valid scenario, rate and speed in range.
func checkPlayback(driver *drivers.Driver, sc *Scenario, rate, speed float64) error {
	if driver == nil {
		return errors.New("simulator: no driver")
	}
	if driver.NewEncoder == nil {
		return fmt.Errorf("%w: %s", ErrNoEncoder, driver.Name)
	}
	if sc == nil {
		return errors.New("simulator: no scenario")
	}
	if err := sc.Validate(); err != nil {
		return err
	}
	if math.IsNaN(rate) || rate < 0 || rate > MaxRate {
		return fmt.Errorf("simulator: rate %g frames/s is outside 0..%d", rate, MaxRate)
	}
	if math.IsNaN(speed) || speed < 0 || speed > MaxSpeed {
		return fmt.Errorf("simulator: speed %g is outside 0..%d", speed, MaxSpeed)
	}
	return nil
}

// newEncoder makes the driver's encoder, with an error naming the driver.
func newEncoder(driver *drivers.Driver, opts drivers.Options) (drivers.Encoder, error) {
	enc, err := driver.NewEncoder(opts)
	if err != nil {
		return nil, fmt.Errorf("simulator: %s encoder: %w", driver.Name, err)
	}
	return enc, nil
}

// pacing is how a scenario is played, from options checkPlayback accepted:
// one frame per period (1/rate, or the encoder's interval when the rate is
// 0), scenario time running speed times as fast as the wall clock.
type pacing struct {
	tl       *timeline
	period   time.Duration
	speed    float64 // never 0
	maxBurst int64   // most frames rendered in one catch-up (burstWindow)
	seed     uint64
}

func newPacing(driver *drivers.Driver, enc drivers.Encoder, sc *Scenario, rate, speed float64, seed uint64) (pacing, error) {
	period := enc.Interval()
	if rate > 0 {
		period = time.Duration(float64(time.Second) / rate)
	}
	if period <= 0 {
		return pacing{}, fmt.Errorf("simulator: %s encoder has no interval; set a rate", driver.Name)
	}
	if speed == 0 {
		speed = 1
	}
	return pacing{
		tl:       newTimeline(sc),
		period:   period,
		speed:    speed,
		maxBurst: max(1, int64(burstWindow/period)),
		seed:     seed,
	}, nil
}

// scenarioTime converts wall-clock time since the start into scenario time.
func (pc pacing) scenarioTime(wall time.Duration) time.Duration {
	if pc.speed == 1 {
		return wall
	}
	return time.Duration(float64(wall) * pc.speed)
}

// start begins one playback of the scenario, from its start, now.
func (pc pacing) start() *player {
	pcg := rand.NewPCG(pc.seed, 0)
	now := time.Now()
	return &player{
		pacing:    pc,
		pcg:       pcg,
		rng:       rand.New(pcg),
		startedAt: now,
		wallStart: now.Round(0),
		lastStep:  -1,
		lastPass:  -1,
	}
}

// player is one playback: where in the scenario it is and which frames it
// has rendered. Device and TCPSender each loop over look, render (sending
// what it rendered their own way) and wake. One goroutine only.
type player struct {
	pacing
	pcg *rand.PCG
	// rng is the noise source, reseeded per frame; appendFrame draws the
	// frame's garbage from it too.
	rng                *rand.Rand
	startedAt          time.Time // elapsed time is measured from it (monotonic)
	wallStart          time.Time // the frames' time stamps count from it
	next               int64     // index of the next frame to render
	lastStep, lastPass int
}

// look returns the wall-clock time since the start, the scenario's moment
// then, and whether a step (or a looping scenario's pass) began since the
// last look.
func (p *player) look() (elapsed time.Duration, m Moment, entered bool) {
	elapsed = time.Since(p.startedAt)
	m, _ = p.tl.at(p.scenarioTime(elapsed))
	if m.Step != p.lastStep || m.Pass != p.lastPass {
		p.lastStep, p.lastPass = m.Step, m.Pass
		entered = true
	}
	return elapsed, m, entered
}

// render calls emit for every frame due by elapsed that the scenario lets
// out (not silent, not unplugged), with the number of garbage bytes its step
// adds after it. It returns how many frames it emitted, and how many it
// skipped because the player fell more than burstWindow behind.
func (p *player) render(elapsed time.Duration, emit func(f drivers.Frame, garbage int)) (n, skipped uint64) {
	due := int64(elapsed/p.period) + 1 // frames scheduled at or before now
	if due-p.next > p.maxBurst {
		skipped = uint64(due - p.next - p.maxBurst)
		p.next = due - p.maxBurst
	}
	for ; p.next < due; p.next++ {
		at := time.Duration(p.next) * p.period
		// Frame k's noise depends on (seed, k) alone, whatever was
		// skipped before it.
		p.pcg.Seed(p.seed, uint64(p.next))
		f, fm := p.tl.frame(p.scenarioTime(at), p.rng)
		if fm.Ended || fm.Silent || fm.Unplug {
			continue
		}
		f.Time = p.wallStart.Add(at)
		emit(f, fm.Garbage)
		n++
	}
	return n, skipped
}

// appendFrame encodes f and, when garbage > 0, that many garbage bytes and
// delim after it.
func (p *player) appendFrame(dst []byte, enc drivers.Encoder, f drivers.Frame, garbage int, delim []byte) []byte {
	dst = enc.Encode(dst, f)
	if garbage > 0 {
		dst = appendGarbage(dst, garbage, p.rng, delim)
	}
	return dst
}

// wake is when, as time since the start, the player next has something to
// do: the next frame is due or the next step begins.
func (p *player) wake(elapsed time.Duration) time.Duration {
	wake := time.Duration(p.next) * p.period
	if b, ok := p.tl.nextBoundary(p.scenarioTime(elapsed)); ok {
		// Rounded up so that waking there is inside the next step.
		if wb := time.Duration(math.Ceil(float64(b) / p.speed)); wb < wake {
			wake = wb
		}
	}
	return wake
}
