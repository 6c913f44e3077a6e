package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// mountTmpfs mounts a tmpfs of size bytes in a new directory. Not as root
// it skips (the MaxBytes tests prove the same path without privilege); as
// root a failing mount fails the test when CI is set.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; the MaxBytes tests cover the full store without it")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tmpfs (needed for the disk-full test in CI): %v", err)
		}
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

func bigItem(seq uint64) Item {
	r := numeric("ox", seq, drivers.SpO2, 97, t0.Add(time.Duration(seq)*time.Millisecond))
	return Item{Reading: r, Outbox: &Message{Topic: "vigil/s/r/ox/spo2", QoS: 1,
		Payload: append(fmt.Appendf(nil, "seq=%d;", seq), bytes.Repeat([]byte("x"), 8000)...)}}
}

// TestDiskFullTmpfs fills the file system under the database: the Writer
// reports ErrStoreFull, keeps the batch and what is added meanwhile, and
// commits all of it once space is freed.
func TestDiskFullTmpfs(t *testing.T) {
	dir := mountTmpfs(t, 2<<20)
	s, err := Open(filepath.Join(dir, "vigil.db"), Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errs := newErrorLog()
	var log commitLog
	w := startWriter(t, s, WriterOptions{OnCommit: log.onCommit, OnError: errs.onError,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err := w.Add(bigItem(1)); err != nil {
		t.Fatal(err)
	}
	flush(t, w.Writer)

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	for seq := uint64(2); seq <= 11; seq++ {
		if err := w.Add(bigItem(seq)); err != nil {
			t.Fatal(err)
		}
	}
	err = errs.waitFor(t, ErrStoreFull)
	t.Logf("reported: %v", err)
	// Keeps accepting while failing.
	for seq := uint64(12); seq <= 20; seq++ {
		if err := w.Add(bigItem(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if w.Errors() == 0 {
		t.Error("Errors() did not count the failure")
	}
	if depth, _, err := s.OutboxStats(); err != nil || depth != 1 {
		t.Errorf("outbox depth %d while full, want 1 (%v)", depth, err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	flush(t, w.Writer)
	entries, err := s.Outbox(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 20 {
		t.Fatalf("%d entries after space was freed, want 20", len(entries))
	}
	for i, e := range entries {
		if want := fmt.Sprintf("seq=%d;", i+1); !bytes.HasPrefix(e.Payload, []byte(want)) {
			t.Fatalf("entry %d: %.20s, want %s", i, e.Payload, want)
		}
	}
	readings, err := s.Readings(ReadingQuery{})
	if err != nil || len(readings) != 20 {
		t.Errorf("readings %d, %v", len(readings), err)
	}
}

// TestMaxBytes fills a database capped by Options.MaxBytes: the Writer
// reports ErrStoreFull and keeps its batch; PruneOutbox deletes the oldest
// waveform chunks and readings (the outbox is kept while they last) and the
// batch then commits.
func TestMaxBytes(t *testing.T) {
	const maxBytes = 512 << 10
	s := openTest(t, Options{MaxBytes: maxBytes, Logger: discardLogger()})
	errs := newErrorLog()
	w := startWriter(t, s, WriterOptions{OnError: errs.onError, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})

	samples := make([]float64, 75)
	for i := range samples {
		samples[i] = float64(i) + 0.1 // float64 encoding: 600 bytes a chunk
	}
	seq := uint64(0)
	chunk := func() []Item {
		items := make([]Item, 10)
		for i := range items {
			seq++
			at := t0.Add(time.Duration(seq) * time.Second)
			if seq%2 == 0 {
				items[i] = Item{Reading: pleth("ox", seq, at, samples...)}
			} else {
				items[i] = readingItem(numeric("ox", seq, drivers.SpO2, 97, at), "")
			}
		}
		return items
	}
	// Fill in small commits until one fails.
	failed := false
	for i := 0; i < 1000 && !failed; i++ {
		before := w.Stats().Items
		if err := w.Add(chunk()...); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := w.Stats()
			if st.Errors > 0 {
				failed = true
				break
			}
			if st.Items >= before+10 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no commit and no error within 30 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if !failed {
		t.Fatal("the database never filled")
	}
	errs.waitFor(t, ErrStoreFull)
	keptFrom := seq - 9 // the failing batch's first seq
	st, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > maxBytes {
		t.Errorf("database file %d bytes, cap %d", st.Size(), maxBytes)
	}
	depthBefore, _, err := s.OutboxStats()
	if err != nil {
		t.Fatal(err)
	}

	dropped, err := s.PruneOutbox(t0.Add(time.Duration(seq) * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 0 {
		t.Errorf("dropped %d outbox entries while readings were left to delete", dropped)
	}
	flush(t, w.Writer)

	got, err := s.Readings(ReadingQuery{Waveforms: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0].Seq == 1 {
		t.Fatalf("oldest readings not deleted under pressure (%d left)", len(got))
	}
	if last := got[len(got)-1]; last.Seq != seq {
		t.Errorf("newest reading %d, want the failed batch's %d", last.Seq, seq)
	}
	found := 0
	for _, r := range got {
		if r.Seq >= keptFrom {
			found++
		}
	}
	if found != 10 {
		t.Errorf("%d of the failed batch's 10 items committed", found)
	}
	depthAfter, _, err := s.OutboxStats()
	if err != nil || depthAfter != depthBefore+5 {
		t.Errorf("outbox depth %d after, %d before (+5 expected): %v", depthAfter, depthBefore, err)
	}
	used, err := usedBytes(t.Context(), s.wdb)
	if err != nil || float64(used) > PressureHighWater*maxBytes {
		t.Errorf("used %d bytes after pruning (%v)", used, err)
	}
}

// TestWriterStopWhileFull: when the last commit at shutdown fails, Run says
// so and how many items were lost, rather than returning nil.
func TestWriterStopWhileFull(t *testing.T) {
	s := openTest(t, Options{MaxBytes: 256 << 10})
	errs := newErrorLog()
	w := startWriter(t, s, WriterOptions{OnError: errs.onError, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	for seq := uint64(1); w.Errors() == 0; seq++ {
		if seq > 1000 {
			t.Fatal("the database never filled")
		}
		if err := w.Add(bigItem(seq)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for w.Stats().Items < seq && w.Errors() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no commit and no error within 30 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	errs.waitFor(t, ErrStoreFull)
	if err := w.Add(bigItem(5000)); err != nil {
		t.Fatal(err)
	}
	err := w.stop()
	if !errors.Is(err, ErrStoreFull) || !strings.Contains(err.Error(), "2 items not committed") {
		t.Fatalf("Run at shutdown on a full store: %v", err)
	}
}
