package worker

import (
	"bytes"
	"context"
	"io"
	"log"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/procpool/procpool/codec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testHost plays the host of a Server served with ServeConn over io.Pipe
// pairs, with codec's Reader and Writer.
type testHost struct {
	t      testing.TB
	ready  codec.Message
	wmu    sync.Mutex
	w      *codec.Writer
	toW    *io.PipeWriter // the worker's input, written by the host
	toHost *io.PipeWriter // the worker's output
	msgs   chan codec.Message
	done   chan error // ServeConn's result
	cancel context.CancelFunc
}

type hostOptions struct {
	maxFrame uint32 // announced in hello; 0 means codec.DefaultMaxFrame
	ctx      context.Context
	// shared is the shared memory region's size announced in hello, and
	// mapShared how the worker maps it (as Serve maps fd 5).
	shared    uint64
	mapShared func(size uint64) (*region, error)
	// features are the optional features announced in hello.
	features codec.Features
}

// startHost serves s over pipes and performs the handshake.
func startHost(t testing.TB, s *Server, opts hostOptions) *testHost {
	t.Helper()
	h := startRaw(t, s, opts)
	h.send(&codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: opts.maxFrame, SharedSize: opts.shared, Features: opts.features})
	h.ready = h.next()
	require.Equal(t, codec.KindReady, h.ready.Kind)
	return h
}

// startRaw serves s over pipes without a handshake.
func startRaw(t testing.TB, s *Server, opts hostOptions) *testHost {
	t.Helper()
	if s.Logger == nil {
		s.Logger = testLogger(t)
	}
	ctx := opts.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	wr, ww := io.Pipe()
	hr, hw := io.Pipe()
	h := &testHost{
		t:      t,
		w:      codec.NewWriter(ww, 0),
		toW:    ww,
		toHost: hw,
		msgs:   make(chan codec.Message, 4096),
		done:   make(chan error, 1),
		cancel: cancel,
	}
	go func() {
		h.done <- s.serve(ctx, wr, hw, opts.mapShared)
	}()
	go func() {
		defer close(h.msgs)
		r := codec.NewReader(hr, 0)
		for {
			var m codec.Message
			if err := r.Read(&m); err != nil {
				return
			}
			m.Payload = bytes.Clone(m.Payload)
			for i := range m.Items {
				m.Items[i].Payload = bytes.Clone(m.Items[i].Payload)
			}
			h.msgs <- m
		}
	}()
	t.Cleanup(h.close)
	return h
}

// close ends the conversation if it is still going and waits for ServeConn.
func (h *testHost) close() {
	h.toW.Close()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Errorf("ServeConn did not return after the host closed its pipe")
	}
	h.cancel()
	h.toHost.Close()
	for range h.msgs {
	}
}

func (h *testHost) send(m *codec.Message) {
	h.t.Helper()
	h.wmu.Lock()
	defer h.wmu.Unlock()
	require.NoError(h.t, h.w.Write(m))
}

func (h *testHost) request(id uint64, jobType string, payload []byte) {
	h.t.Helper()
	h.send(&codec.Message{Kind: codec.KindRequest, ID: id, JobType: jobType, Payload: payload})
}

// next returns the next message from the worker.
func (h *testHost) next() codec.Message {
	h.t.Helper()
	select {
	case m, ok := <-h.msgs:
		require.True(h.t, ok, "the worker's output ended")
		return m
	case <-time.After(10 * time.Second):
		h.t.Fatal("no message from the worker")
	}
	panic("unreachable")
}

// answers collects the worker's answers until every id in ids has one,
// taking the responses out of batch responses, and fails on an answer to
// another id or a second answer. It returns the answers by id, the number of
// batch responses among the frames and the other messages in order.
func (h *testHost) answers(ids ...uint64) (map[uint64]codec.Message, int, []codec.Message) {
	h.t.Helper()
	want := map[uint64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	got := map[uint64]codec.Message{}
	batches := 0
	var other []codec.Message
	take := func(m codec.Message) {
		h.t.Helper()
		require.True(h.t, want[m.ID], "an answer to id %d, not among %v", m.ID, ids)
		_, dup := got[m.ID]
		require.False(h.t, dup, "a second answer to id %d", m.ID)
		got[m.ID] = m
	}
	for len(got) < len(ids) {
		m := h.next()
		switch m.Kind {
		case codec.KindResponse:
			take(m)
		case codec.KindBatchResponse:
			batches++
			for _, it := range m.Items {
				take(it)
			}
		default:
			other = append(other, m)
		}
	}
	return got, batches, other
}

// quiet checks that the worker sends nothing for d.
func (h *testHost) quiet(d time.Duration) {
	h.t.Helper()
	select {
	case m, ok := <-h.msgs:
		if ok {
			h.t.Fatalf("unexpected message from the worker: %+v", m)
		}
	case <-time.After(d):
	}
}

// result waits for ServeConn's result.
func (h *testHost) result(d time.Duration) error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for close
		return err
	case <-time.After(d):
		h.t.Fatalf("ServeConn did not return within %v", d)
	}
	return nil
}

func (h *testHost) running() bool {
	select {
	case err := <-h.done:
		h.done <- err
		return false
	default:
		return true
	}
}

type testWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != nil {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *log.Logger {
	tw := &testWriter{t: t}
	t.Cleanup(func() {
		tw.mu.Lock()
		tw.t = nil
		tw.mu.Unlock()
	})
	return log.New(tw, "", 0)
}
