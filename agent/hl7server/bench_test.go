package hl7server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
)

type discardSink struct{ readings int }

func (s *discardSink) Reading(drivers.Reading)      { s.readings++ }
func (*discardSink) Frame(drivers.FrameResult, int) {}

// BenchmarkMessageRoundTrip is one monitor sending the worked example and
// waiting for its ACK, over loopback: decode, route, sink, ACK.
func BenchmarkMessageRoundTrip(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join(captures, "comen-nc-series.bin"))
	if err != nil {
		b.Fatal(err)
	}
	sink := &discardSink{}
	srv, err := Listen(Options{
		Listen:  "127.0.0.1:0",
		Devices: []Device{{ID: "monitor-1", Sender: comenSender, Sink: sink}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			b.Error(err)
		}
	}()
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(raw); err != nil {
			b.Fatal(err)
		}
		// The ACK ends with FS CR; its segments end with CR.
		if _, err := r.ReadBytes(0x1C); err != nil {
			b.Fatal(err)
		}
		if _, err := r.ReadByte(); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}
