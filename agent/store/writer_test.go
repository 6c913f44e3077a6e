package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestWriterCommitsSingleItemsAtOnce(t *testing.T) {
	s := openTest(t, Options{})
	var log commitLog
	w := startWriter(t, s, WriterOptions{OnCommit: log.onCommit})
	// At a low rate each item is its own transaction: Flush returns only
	// once the item is committed, without waiting for company.
	for i := 1; i <= 5; i++ {
		if err := w.Add(readingItem(numeric("ox", uint64(i), drivers.SpO2, 97, t0), "")); err != nil {
			t.Fatal(err)
		}
		flush(t, w.Writer)
	}
	if got := log.sizes(); !reflect.DeepEqual(got, []int{1, 1, 1, 1, 1}) {
		t.Errorf("batch sizes %v, want five single commits", got)
	}
	if st := w.Stats(); st.Commits != 5 || st.Items != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestWriterBatchesUnderLoad(t *testing.T) {
	s := openTest(t, Options{})
	var log commitLog
	release := make(chan struct{})
	entered := make(chan struct{})
	var first atomic.Bool
	w := startWriter(t, s, WriterOptions{OnCommit: func(e []OutboxEntry) {
		log.onCommit(e)
		// Hold the first commit's callback: everything added meanwhile
		// is queued and must go into the next transaction together.
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}})
	if err := w.Add(readingItem(numeric("ox", 1, drivers.SpO2, 97, t0), "")); err != nil {
		t.Fatal(err)
	}
	<-entered
	const n = 2000
	for i := 2; i <= n+1; i++ {
		r := numeric("ox", uint64(i), drivers.SpO2, 97, t0.Add(time.Duration(i)*time.Millisecond))
		if err := w.Add(readingItem(r, "S")); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	flush(t, w.Writer)
	if got := log.sizes(); !reflect.DeepEqual(got, []int{1, n}) {
		t.Fatalf("batch sizes %v, want [1 %d]", got, n)
	}
	// OnCommit order is insertion order, ids ascending.
	all := log.all()
	for i, e := range all {
		want := fmt.Sprintf(`{"seq":%d,`, i+1)
		if string(e.Payload[:len(want)]) != want || (i > 0 && e.ID <= all[i-1].ID) {
			t.Fatalf("entry %d: id %d payload %s", i, e.ID, e.Payload)
		}
	}
	// The ids OnCommit reported are the rows' ids (multi-row inserts).
	stored, err := s.Outbox(0, n+10)
	if err != nil || !reflect.DeepEqual(stored, all) {
		t.Fatalf("outbox rows differ from OnCommit's entries (%v)", err)
	}
	got, err := s.Readings(ReadingQuery{Session: "S"})
	if err != nil || len(got) != n {
		t.Fatalf("readings: %d, %v", len(got), err)
	}
}

func TestWriterQueueFull(t *testing.T) {
	s := openTest(t, Options{})
	release := make(chan struct{})
	entered := make(chan struct{})
	var first atomic.Bool
	w := startWriter(t, s, WriterOptions{QueueSize: 10, OnCommit: func([]OutboxEntry) {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}})
	item := func(seq uint64) Item { return readingItem(numeric("ox", seq, drivers.SpO2, 97, t0), "") }
	if err := w.Add(item(1)); err != nil {
		t.Fatal(err)
	}
	<-entered
	// The commit is held: the queue fills.
	for i := uint64(2); i <= 9; i++ {
		if err := w.Add(item(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Add(item(10), item(11), item(12)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Add beyond the queue: %v", err)
	}
	if err := w.Add(item(10), item(11)); err != nil {
		t.Fatalf("Add that fits: %v", err)
	}
	if st := w.Stats(); st.QueueFull != 3 || st.Queued != 10 {
		t.Errorf("stats %+v", st)
	}
	close(release)
	flush(t, w.Writer)
	seqs, err := s.LastSeq()
	if err != nil || seqs["ox"] != 11 {
		t.Errorf("LastSeq %v %v", seqs, err)
	}
}

func TestWriterCommitsQueueOnStop(t *testing.T) {
	s := openTest(t, Options{})
	var log commitLog
	release := make(chan struct{})
	entered := make(chan struct{})
	var first atomic.Bool
	w := startWriter(t, s, WriterOptions{OnCommit: func(e []OutboxEntry) {
		log.onCommit(e)
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}})
	if err := w.Add(readingItem(numeric("ox", 1, drivers.SpO2, 97, t0), "")); err != nil {
		t.Fatal(err)
	}
	<-entered
	for i := uint64(2); i <= 50; i++ {
		if err := w.Add(readingItem(numeric("ox", i, drivers.SpO2, 97, t0), "")); err != nil {
			t.Fatal(err)
		}
	}
	w.cancel()
	close(release)
	if err := w.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := w.Add(readingItem(numeric("ox", 51, drivers.SpO2, 97, t0), "")); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Run returned: %v", err)
	}
	// Everything accepted was committed: Flush has nothing to wait for.
	if err := w.Flush(context.Background()); err != nil {
		t.Errorf("Flush after stop: %v", err)
	}
	depth, _, err := s.OutboxStats()
	if err != nil || depth != 50 {
		t.Errorf("outbox depth %d after stop, want 50 (%v)", depth, err)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

func TestOutboxOrderDeleteStats(t *testing.T) {
	s := openTest(t, Options{})
	var log commitLog
	clock := t0
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	w := startWriter(t, s, WriterOptions{OnCommit: log.onCommit, Now: now})

	if depth, oldest, err := s.OutboxStats(); err != nil || depth != 0 || !oldest.IsZero() {
		t.Fatalf("empty outbox stats: %d %v %v", depth, oldest, err)
	}
	for i := 0; i < 10; i++ {
		mu.Lock()
		clock = t0.Add(time.Duration(i) * time.Second)
		mu.Unlock()
		m := &Message{Topic: fmt.Sprintf("t/%d", i), Payload: []byte{byte(i)}, QoS: byte(i % 3), Retained: i == 3}
		if err := w.Add(Item{Outbox: m}); err != nil {
			t.Fatal(err)
		}
	}
	// A message with no payload is stored as an empty one.
	if err := w.Add(Item{Outbox: &Message{Topic: "t/empty", QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	flush(t, w.Writer)

	all, err := s.Outbox(0, 0)
	if err != nil || len(all) != 11 {
		t.Fatalf("Outbox: %d, %v", len(all), err)
	}
	if !reflect.DeepEqual(all, log.all()) {
		t.Errorf("Outbox differs from what OnCommit reported:\n%+v\n%+v", all, log.all())
	}
	for i, e := range all[:10] {
		if e.Topic != fmt.Sprintf("t/%d", i) || e.QoS != byte(i%3) || e.Retained != (i == 3) ||
			!e.Created.Equal(t0.Add(time.Duration(i)*time.Second)) || len(e.Payload) != 1 || e.Payload[0] != byte(i) {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
	if e := all[10]; e.Payload == nil || len(e.Payload) != 0 {
		t.Errorf("empty payload came back as %#v", e.Payload)
	}
	// Paging by cursor.
	page, err := s.Outbox(all[3].ID, 2)
	if err != nil || len(page) != 2 || page[0].ID != all[4].ID || page[1].ID != all[5].ID {
		t.Errorf("page after %d: %+v %v", all[3].ID, page, err)
	}

	// Broker acknowledgements: delete the first three and one in the middle.
	w.DeleteOutbox(all[0].ID, all[1].ID, all[2].ID, all[6].ID, 999999)
	flush(t, w.Writer)
	left, err := s.Outbox(0, 100)
	if err != nil || len(left) != 7 || left[0].ID != all[3].ID {
		t.Fatalf("after delete: %+v %v", left, err)
	}
	depth, oldest, err := s.OutboxStats()
	if err != nil || depth != 7 || !oldest.Equal(t0.Add(3*time.Second)) {
		t.Errorf("stats after delete: %d %v %v", depth, oldest, err)
	}
	if st := w.Stats(); st.Deletes != 5 {
		t.Errorf("stats %+v", st)
	}

	// Ids are never reused: delete everything, add one more.
	ids := make([]int64, len(left))
	for i, e := range left {
		ids[i] = e.ID
	}
	w.DeleteOutbox(ids...)
	if err := w.Add(Item{Outbox: &Message{Topic: "t/next", QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	flush(t, w.Writer)
	next, err := s.Outbox(0, 10)
	if err != nil || len(next) != 1 || next[0].ID <= all[10].ID {
		t.Errorf("after emptying: %+v %v", next, err)
	}
}

func TestPruneOutboxByCount(t *testing.T) {
	s := openTest(t, Options{OutboxMaxEntries: 5, OutboxMaxAge: -1})
	w := startWriter(t, s, WriterOptions{})
	for i := 0; i < 12; i++ {
		if err := w.Add(Item{Outbox: &Message{Topic: fmt.Sprintf("t/%d", i), QoS: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w.Writer)
	dropped, err := s.PruneOutbox(t0)
	if err != nil || dropped != 7 {
		t.Fatalf("PruneOutbox: dropped %d, %v", dropped, err)
	}
	left, err := s.Outbox(0, 100)
	if err != nil || len(left) != 5 || left[0].Topic != "t/7" || left[4].Topic != "t/11" {
		t.Errorf("left: %+v %v", left, err)
	}
	if dropped, err := s.PruneOutbox(t0); err != nil || dropped != 0 {
		t.Errorf("second prune: %d %v", dropped, err)
	}
}

func TestPruneOutboxByAge(t *testing.T) {
	s := openTest(t, Options{OutboxMaxAge: 5 * time.Minute, OutboxMaxEntries: -1})
	var mu sync.Mutex
	clock := t0
	w := startWriter(t, s, WriterOptions{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
	add := func(at time.Time, topic string) {
		mu.Lock()
		clock = at
		mu.Unlock()
		if err := w.Add(Item{Outbox: &Message{Topic: topic, QoS: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		add(t0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("t/%d", i))
	}
	// The clock stepped back: this entry looks old but was queued last.
	add(t0, "t/after-step")
	flush(t, w.Writer)

	// At t0+9m, entries created before t0+4m are too old.
	dropped, err := s.PruneOutbox(t0.Add(9 * time.Minute))
	if err != nil || dropped != 4 {
		t.Fatalf("PruneOutbox: dropped %d, %v", dropped, err)
	}
	left, err := s.Outbox(0, 100)
	if err != nil || len(left) != 7 || left[0].Topic != "t/4" || left[6].Topic != "t/after-step" {
		t.Errorf("left: %+v %v", left, err)
	}
	// Much later everything is too old.
	dropped, err = s.PruneOutbox(t0.Add(time.Hour))
	if err != nil || dropped != 7 {
		t.Errorf("later prune: %d %v", dropped, err)
	}
}

func TestPruneRetention(t *testing.T) {
	s := openTest(t, Options{Retention: 24 * time.Hour})
	w := startWriter(t, s, WriterOptions{})
	old, recent := t0.Add(-48*time.Hour), t0.Add(-time.Hour)
	var items []Item
	for i := 0; i < 12000; i++ { // more than two prune batches
		items = append(items, Item{Reading: numeric("ox", uint64(i+1), drivers.SpO2, 97, old.Add(time.Duration(i)*time.Millisecond))})
	}
	items = append(items,
		Item{Reading: numeric("ox", 20000, drivers.SpO2, 97, recent)},
		Item{Reading: pleth("ox", 20001, old, 1, 2, 3)},
		Item{Reading: pleth("ox", 20002, recent, 1, 2, 3)},
		Item{DeviceEvent: &DeviceEvent{Time: old, Device: "ox", State: "connected"}},
		Item{DeviceEvent: &DeviceEvent{Time: recent, Device: "ox", State: "silent"}},
		Item{AlarmEvent: alarmEventAt(old)},
		Item{Audit: auditAt(old)},
	)
	if err := w.Add(items...); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(SessionRow{ID: "S-old", Room: "r", Started: old}); err != nil {
		t.Fatal(err)
	}
	flush(t, w.Writer)

	st, err := s.Prune(t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Readings != 12000 || st.Waveforms != 1 || st.DeviceEvents != 1 {
		t.Errorf("pruned %+v", st)
	}
	got, _ := s.Readings(ReadingQuery{Waveforms: true})
	if len(got) != 2 || got[0].Seq != 20000 || got[1].Seq != 20002 {
		t.Errorf("left readings %+v", got)
	}
	// Alarm events, audit and sessions are kept.
	if ev, _ := s.AlarmEvents(time.Time{}, time.Time{}, ""); len(ev) != 1 {
		t.Errorf("alarm events %d", len(ev))
	}
	if au, _ := s.AuditEntries(time.Time{}, time.Time{}); len(au) != 1 {
		t.Errorf("audit %d", len(au))
	}
	if _, err := s.Session("S-old"); err != nil {
		t.Errorf("session: %v", err)
	}

	// Negative retention keeps everything.
	s2 := openTest(t, Options{Retention: -1})
	w2 := startWriter(t, s2, WriterOptions{})
	if err := w2.Add(Item{Reading: numeric("ox", 1, drivers.SpO2, 97, old.Add(-1000*time.Hour))}); err != nil {
		t.Fatal(err)
	}
	flush(t, w2.Writer)
	if st, err := s2.Prune(t0); err != nil || st != (PruneStats{}) {
		t.Errorf("prune with retention off: %+v %v", st, err)
	}
}

// TestConcurrentReadersDuringWrites runs queries while the Writer commits
// (run with -race). Readers see whole transactions only: each Add call
// carries ten readings, so every count they see is a multiple of ten.
func TestConcurrentReadersDuringWrites(t *testing.T) {
	s := openTest(t, Options{})
	w := startWriter(t, s, WriterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for ctx.Err() == nil {
				got, err := s.Readings(ReadingQuery{Devices: []string{"ox"}})
				if err != nil {
					errs <- err
					return
				}
				if len(got)%10 != 0 || len(got) < last {
					errs <- fmt.Errorf("reader saw %d readings after %d", len(got), last)
					return
				}
				last = len(got)
				if _, _, err := s.OutboxStats(); err != nil {
					errs <- err
					return
				}
				if _, err := s.LastSeq(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	seq := uint64(0)
	for i := 0; i < 300; i++ {
		items := make([]Item, 10)
		for j := range items {
			seq++
			items[j] = readingItem(numeric("ox", seq, drivers.SpO2, 97, t0.Add(time.Duration(seq)*time.Millisecond)), "")
		}
		if err := w.Add(items...); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			entries, err := s.Outbox(0, 100)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int64, len(entries))
			for k, e := range entries {
				ids[k] = e.ID
			}
			w.DeleteOutbox(ids...)
		}
	}
	flush(t, w.Writer)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, err := s.Readings(ReadingQuery{}); err != nil || len(got) != 3000 {
		t.Errorf("final: %d %v", len(got), err)
	}
}
