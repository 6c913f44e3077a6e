package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Writer defaults.
const (
	// DefaultQueueSize: 100,000 items is about 50 minutes of one monitor's
	// traffic at 31 items/s, far more than a commit retry waits, and about
	// 40 MB at most.
	DefaultQueueSize = 100_000
	// DefaultRetryMin and DefaultRetryMax bound the backoff between
	// attempts to commit a failing batch: quick enough to resume soon after
	// space is freed, slow enough not to spin on a full disk.
	DefaultRetryMin = 100 * time.Millisecond
	DefaultRetryMax = 5 * time.Second
	// shutdownAttempts: tries to commit the last batch once Run's context
	// is over, before Run gives up and returns the error.
	shutdownAttempts = 3
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// QueueSize bounds the items waiting for a commit (the batch being
	// committed not included); default DefaultQueueSize.
	QueueSize int
	// OnCommit gets the outbox rows each transaction inserted, in insertion
	// order, after the commit; it is not called for a transaction without
	// outbox rows. It runs on Run's goroutine: the next commit waits for it,
	// so it must hand the entries on and return, and must not call Flush.
	OnCommit func(entries []OutboxEntry)
	// OnError gets every failed commit attempt (errors.Is ErrStoreFull for
	// a full disk or MaxBytes), on Run's goroutine. The batch is kept and
	// retried.
	OnError func(err error)
	// RetryMin and RetryMax bound the backoff between commit attempts of a
	// failing batch; defaults DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// Now stamps outbox entries (Created) and audit entries, device events
	// and alarm events without a time; default time.Now.
	Now func() time.Time
}

// WriterStats are a Writer's counters.
type WriterStats struct {
	Queued    int    // items waiting for the next transaction
	Commits   uint64 // transactions committed
	Items     uint64 // items committed
	Deletes   uint64 // outbox deletions committed (ids asked for, present or not)
	Errors    uint64 // failed commit attempts
	QueueFull uint64 // items refused with ErrQueueFull
}

// Writer is the store's single writer: Add queues, Run commits. Add,
// DeleteOutbox, Flush and the counters are safe for concurrent use; Run is
// called once.
type Writer struct {
	s *Store
	o WriterOptions

	wake chan struct{} // capacity 1: "there is work"

	mu         sync.Mutex
	queue      []pending
	deletes    []int64
	started    bool
	closed     bool          // Run has returned: Add refuses
	queuedGen  uint64        // Add and DeleteOutbox calls accepted so far
	doneGen    uint64        // of those, the ones committed
	doneSignal chan struct{} // closed at each commit and at Run's end, then replaced

	failing uint64 // failed attempts since the last commit; Run's goroutine only

	commits, items, deleted, errs, queueFull atomic.Uint64
}

// NewWriter returns the store's Writer. A Store has one writer connection;
// two Writers would only take turns on it.
func (s *Store) NewWriter(o WriterOptions) *Writer {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Writer{s: s, o: o, wake: make(chan struct{}, 1), doneSignal: make(chan struct{})}
}

// Add queues items for the next transaction without blocking. All of them
// are queued, or none: ErrQueueFull when they do not fit (counted in
// QueueFull), ErrInvalidItem for an item the store cannot record, ErrClosed
// once Run has returned. The Writer copies the items: the caller may reuse
// them (a Reading's Samples slice is kept, as drivers.Reading says it
// belongs to the reading).
func (w *Writer) Add(items ...Item) error {
	if len(items) == 0 {
		return nil
	}
	now := w.o.Now()
	ps := make([]pending, len(items))
	for i, it := range items {
		p, err := newPending(it, now)
		if err != nil {
			return err
		}
		ps[i] = p
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if len(w.queue)+len(ps) > w.o.QueueSize {
		w.mu.Unlock()
		w.queueFull.Add(uint64(len(ps)))
		return ErrQueueFull
	}
	w.queue = append(w.queue, ps...)
	w.queuedGen++
	w.mu.Unlock()
	w.signal()
	return nil
}

// DeleteOutbox queues the deletion of outbox entries (the publisher's
// broker acknowledgements) for the next transaction. Ids not in the outbox
// (already pruned) are ignored. After Run has returned it does nothing: the
// entries stay and are published again after a restart, which consumers
// deduplicate on (device, seq).
func (w *Writer) DeleteOutbox(ids ...int64) {
	if len(ids) == 0 {
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.deletes = append(w.deletes, ids...)
	w.queuedGen++
	many := len(w.deletes) >= deleteBatch
	w.mu.Unlock()
	// Deletions are not urgent (a message deleted late is at worst sent
	// again after a crash, and consumers deduplicate): they ride along with
	// the next commit, or go every deleteFlushInterval, instead of costing
	// a transaction per acknowledged message.
	if many {
		w.signal()
	}
}

const (
	// deleteBatch is how many pending deletions wake the writer at once.
	deleteBatch = 1024
	// deleteFlushInterval bounds how long a deletion waits for a commit.
	deleteFlushInterval = time.Second
)

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Flush waits until everything Add and DeleteOutbox accepted before the call
// is committed (and OnCommit has seen it). It returns ctx's error when ctx
// ends first, and ErrClosed when Run returns without committing it.
func (w *Writer) Flush(ctx context.Context) error {
	w.signal() // pending deletions do not wake the writer by themselves
	w.mu.Lock()
	target := w.queuedGen
	for w.doneGen < target {
		if w.closed {
			w.mu.Unlock()
			return ErrClosed
		}
		ch := w.doneSignal
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
	return nil
}

// Stats returns the counters.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	queued := len(w.queue)
	w.mu.Unlock()
	return WriterStats{
		Queued: queued, Commits: w.commits.Load(), Items: w.items.Load(), Deletes: w.deleted.Load(),
		Errors: w.errs.Load(), QueueFull: w.queueFull.Load(),
	}
}

// Errors counts failed commit attempts (vigil_store_errors_total).
func (w *Writer) Errors() uint64 { return w.errs.Load() }

// QueueFull counts items refused because the queue was full.
func (w *Writer) QueueFull() uint64 { return w.queueFull.Load() }

// batch is what one transaction commits.
type batch struct {
	items   []pending
	deletes []int64
	gen     uint64 // queuedGen when it was taken
}

func (b *batch) empty() bool { return len(b.items) == 0 && len(b.deletes) == 0 }

// take removes everything queued. Queue slices are not reused: the batch
// keeps them until committed.
func (w *Writer) take() batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := batch{items: w.queue, deletes: w.deletes, gen: w.queuedGen}
	w.queue, w.deletes = nil, nil
	return b
}

// Run commits until ctx ends: each time work is queued it takes all of it
// and commits it in one transaction. A failing commit (full disk, I/O
// error) is reported through OnError and retried with backoff, keeping the
// batch, while Add keeps queueing up to QueueSize. When ctx ends, Run
// commits what is queued and returns nil, or the error of that last commit
// with the number of items it could not save. Run may be called once.
func (w *Writer) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("store: Writer.Run called twice")
	}
	w.started = true
	w.mu.Unlock()

	flush := time.NewTicker(deleteFlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return w.finish(batch{})
		case <-w.wake:
		case <-flush.C:
		}
		b := w.take()
		if b.empty() {
			continue
		}
		if !w.commitRetrying(ctx, b) {
			return w.finish(b)
		}
	}
}

// commitRetrying commits b, retrying with backoff; false when ctx ended
// before it succeeded.
func (w *Writer) commitRetrying(ctx context.Context, b batch) bool {
	delay := w.o.RetryMin
	for {
		err := w.commit(b)
		if err == nil {
			return true
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		delay = min(delay*2, w.o.RetryMax)
	}
}

// commit makes one attempt, reporting a failure and publishing a success.
func (w *Writer) commit(b batch) error {
	entries, err := w.s.commitBatch(b.items, b.deletes)
	if err != nil {
		w.errs.Add(1)
		err = fmt.Errorf("store: commit of %d items and %d outbox deletions: %w", len(b.items), len(b.deletes), err)
		// The first failure of a run is logged; the rest are counted, so a
		// full disk does not flood the log.
		if w.failing == 0 {
			w.s.log.Warn("store commit failing; the batch is kept and retried", "path", w.s.path, "err", err)
		}
		w.failing++
		if w.o.OnError != nil {
			w.o.OnError(err)
		}
		return err
	}
	if w.failing > 0 {
		w.s.log.Info("store committing again", "path", w.s.path, "failed_attempts", w.failing, "items", len(b.items))
		w.failing = 0
	}
	w.commits.Add(1)
	w.items.Add(uint64(len(b.items)))
	w.deleted.Add(uint64(len(b.deletes)))
	if len(entries) > 0 && w.o.OnCommit != nil {
		w.o.OnCommit(entries)
	}
	w.mu.Lock()
	w.doneGen = b.gen
	close(w.doneSignal)
	w.doneSignal = make(chan struct{})
	w.mu.Unlock()
	return nil
}

// finish closes the queue and commits what is left: the batch Run was
// retrying, then everything queued after it, in that order.
func (w *Writer) finish(b batch) error {
	w.mu.Lock()
	w.closed = true
	b.items = append(b.items, w.queue...)
	b.deletes = append(b.deletes, w.deletes...)
	b.gen = w.queuedGen
	w.queue, w.deletes = nil, nil
	w.mu.Unlock()

	var err error
	if !b.empty() {
		delay := w.o.RetryMin
		for attempt := 1; attempt <= shutdownAttempts; attempt++ {
			if err = w.commit(b); err == nil {
				break
			}
			if attempt < shutdownAttempts {
				time.Sleep(delay)
				delay = min(delay*2, w.o.RetryMax)
			}
		}
	}
	w.mu.Lock()
	close(w.doneSignal) // Flush waiters see closed and return
	w.doneSignal = make(chan struct{})
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("store: writer stopped with %d items not committed: %w", len(b.items), err)
	}
	return nil
}
