package mqtt

import (
	"strings"
	"sync/atomic"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// resumeStore is paho's ordered in-memory store, counting the snapshots
// paho takes of it. paho calls All only to resend the store: once per
// successful connection (client.go, resume) and once when Connect is called
// (reserveStoredPublishIDs). A new snapshot after a connection attempt
// therefore means paho has decided what it will resend on that connection.
type resumeStore struct {
	*paho.OrderedMemoryStore
	snapshots atomic.Uint64
	// onPut and onDel, when set, see every key stored and deleted: paho
	// deletes an outbound publish when the broker acknowledges it.
	onPut func(key string)
	onDel func(key string)
}

func newResumeStore() *resumeStore {
	return &resumeStore{OrderedMemoryStore: paho.NewOrderedMemoryStore()}
}

// Put stores a packet; paho calls it synchronously inside Publish.
func (s *resumeStore) Put(key string, m packets.ControlPacket) {
	s.OrderedMemoryStore.Put(key, m)
	if s.onPut != nil {
		s.onPut(key)
	}
}

// Del removes a packet; for an outbound publish, paho does so on its PUBACK.
func (s *resumeStore) Del(key string) {
	s.OrderedMemoryStore.Del(key)
	if s.onDel != nil {
		s.onDel(key)
	}
}

// All is paho's snapshot. The count goes up after the snapshot is taken, so
// a message published after the count was seen is not in that snapshot.
func (s *resumeStore) All() []string {
	keys := s.OrderedMemoryStore.All()
	s.snapshots.Add(1)
	return keys
}

// outstanding counts the publishes in the store: handed to paho but not yet
// acknowledged by the broker (paho deletes a message on its PUBACK). It does
// not count as a snapshot.
func (s *resumeStore) outstanding() int {
	n := 0
	for _, key := range s.OrderedMemoryStore.All() {
		if strings.HasPrefix(key, "o.") { // paho's prefix for outbound packets
			n++
		}
	}
	return n
}
