package worker

import (
	"bytes"
	"context"
	"errors"
	"log"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
)

func TestFeaturesNegotiated(t *testing.T) {
	for _, tc := range []struct {
		hello, ready codec.Features
	}{
		{0, 0},
		{codec.FeatureBatch, codec.FeatureBatch},
		{codec.AllFeatures | 1<<20, codec.AllFeatures}, // a feature this SDK does not know
		{codec.FeatureMeta | codec.FeatureStream, codec.FeatureMeta | codec.FeatureStream},
	} {
		s := &Server{}
		s.Handle("echo", echo)
		h := startHost(t, s, hostOptions{features: tc.hello})
		assert.Equal(t, tc.ready, h.ready.Features, "hello with %v", tc.hello)
		h.request(1, "echo", []byte("x"))
		assert.Equal(t, "x", string(h.next().Payload))
	}
}

// A host that did not negotiate batches or streams gets a protocol error
// for their messages: an old worker would not read them either.
func TestFeatureMessagesNeedNegotiation(t *testing.T) {
	for _, m := range []codec.Message{
		{Kind: codec.KindBatchRequest, Items: []codec.Message{{Kind: codec.KindRequest, ID: 1, JobType: "echo"}}},
		{Kind: codec.KindCredit, ID: 1, Credit: 1},
	} {
		s := &Server{}
		s.Handle("echo", echo)
		h := startHost(t, s, hostOptions{features: codec.FeatureMeta})
		h.send(&m)
		err := h.result(5 * time.Second)
		require.Error(t, err, "%s without negotiation", m.Kind)
		assert.Contains(t, err.Error(), "did not negotiate")
		assert.Equal(t, ExitError, exitCode(&Server{Logger: log.New(&bytes.Buffer{}, "", 0)}, err))
	}
}

func batchOf(items ...codec.Message) *codec.Message {
	for i := range items {
		items[i].Kind = codec.KindRequest
	}
	return &codec.Message{Kind: codec.KindBatchRequest, Items: items}
}

// TestBatchMixedKinds: every item of a batch is answered once, in its own
// payload kind, whether it succeeds, fails, names no handler or is a
// VALUE job; answers that are ready together leave in batch responses.
func TestBatchMixedKinds(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	s.Handle("fail", func(ctx context.Context, p []byte) ([]byte, error) { return nil, Errorf("teapot", "%s", p) })
	HandleValue(s, "double", func(ctx context.Context, in int) (int, error) { return 2 * in, nil })
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	v := mustMarshalT(t, 21)
	h.send(batchOf(
		codec.Message{ID: 1, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("one")},
		codec.Message{ID: 2, JobType: "double", PayloadKind: codec.Value, Payload: v},
		codec.Message{ID: 3, JobType: "nope", PayloadKind: codec.Blob},
		codec.Message{ID: 4, JobType: "fail", PayloadKind: codec.Blob, Payload: []byte("stout")},
		codec.Message{ID: 5, JobType: "echo", PayloadKind: codec.Blob},
		codec.Message{ID: 6, JobType: "double", PayloadKind: codec.Value, Payload: []byte{0xa1, 'x'}},
	))
	got, _, other := h.answers(1, 2, 3, 4, 5, 6)
	assert.Empty(t, other)
	assert.Equal(t, "one", string(got[1].Payload))
	assert.Equal(t, codec.Blob, got[1].PayloadKind)
	assert.Equal(t, codec.Value, got[2].PayloadKind)
	assert.Equal(t, mustMarshalT(t, 42), got[2].Payload)
	assert.Equal(t, codec.CodeUnknownJobType, got[3].ErrCode)
	assert.Equal(t, "teapot", got[4].ErrCode)
	assert.Equal(t, "stout", got[4].ErrMessage)
	assert.Empty(t, got[5].ErrCode)
	assert.Empty(t, got[5].Payload)
	assert.Equal(t, codec.CodeBadPayload, got[6].ErrCode)

	// A batch may reuse the ids of answered jobs, not of running ones.
	h.send(batchOf(codec.Message{ID: 1, JobType: "echo", Payload: []byte("again")}))
	got, _, _ = h.answers(1)
	assert.Equal(t, "again", string(got[1].Payload))
}

// TestBatchResponsesCoalesce: the responses queued while another goroutine
// writes go out in one batch response; a lone one as a plain response; pongs
// and chunks before them, each job's chunks before its response.
func TestBatchResponsesCoalesce(t *testing.T) {
	var buf bytes.Buffer
	var o outbox
	o.init(&buf, log.New(&bytes.Buffer{}, "", 0))
	o.rb = codec.NewBatch(o.cw, codec.KindBatchResponse)
	queue := func(kind codec.Kind, id uint64, result string) *job {
		j := jobPool.Get().(*job)
		j.kind, j.id, j.result = kind, id, []byte(result)
		return j
	}
	o.writing = true // another goroutine is writing: send only queues
	o.send(queue(codec.KindResponse, 1, "a"))
	o.send(queue(codec.KindChunk, 2, "c1"))
	o.send(queue(codec.KindPong, 9, ""))
	o.send(queue(codec.KindResponse, 3, "b"))
	o.send(queue(codec.KindChunk, 2, "c2"))
	o.send(queue(codec.KindResponse, 2, "d"))
	o.drain() // what the writer does once done
	o.writing = true
	o.send(queue(codec.KindResponse, 4, "alone"))
	o.drain()

	r := codec.NewReader(&buf, 0)
	var kinds []string
	var m codec.Message
	for r.Read(&m) == nil {
		if m.Kind == codec.KindBatchResponse {
			ids := ""
			for _, it := range m.Items {
				ids += string(it.Payload)
			}
			kinds = append(kinds, "batch:"+ids)
			continue
		}
		kinds = append(kinds, m.Kind.String()+":"+string(m.Payload))
	}
	assert.Equal(t, []string{"chunk:c1", "pong:", "chunk:c2", "batch:abd", "response:alone"}, kinds)
}

// A batch larger than the host's frame limit leaves in several frames, each
// within it.
func TestBatchResponsesSplitByFrameLimit(t *testing.T) {
	var buf bytes.Buffer
	var o outbox
	o.init(&buf, log.New(&bytes.Buffer{}, "", 0))
	o.cw.SetMaxFrame(1000)
	o.rb = codec.NewBatch(o.cw, codec.KindBatchResponse)
	o.writing = true
	for i := range 10 {
		j := jobPool.Get().(*job)
		j.kind, j.id, j.result = codec.KindResponse, uint64(i), bytes.Repeat([]byte{'x'}, 300)
		o.send(j)
	}
	j := jobPool.Get().(*job)
	j.kind, j.id, j.result = codec.KindResponse, 10, bytes.Repeat([]byte{'x'}, 2000) // too large for any frame
	o.send(j)
	o.drain()
	r := codec.NewReader(&buf, 1000)
	var m codec.Message
	ids := map[uint64]string{}
	frames := 0
	for r.Read(&m) == nil {
		frames++
		items := m.Items
		if m.Kind == codec.KindResponse {
			items = []codec.Message{m}
		}
		for _, it := range items {
			ids[it.ID] = it.ErrCode
		}
	}
	assert.Len(t, ids, 11)
	assert.Equal(t, codec.CodeTooLarge, ids[10])
	assert.GreaterOrEqual(t, frames, 4, "3 results of 300 bytes at most per 1000-byte frame")
}

// TestBatchItemCancelledOrExpiredWhileQueued: a batch's jobs wait for a
// runner in order; one cancelled or past its timeout meanwhile is answered
// without running its handler.
func TestBatchItemCancelledOrExpiredWhileQueued(t *testing.T) {
	s := &Server{BatchConcurrency: 1}
	started := make(chan uint64, 10)
	var ran atomic.Int32
	s.Handle("wait", func(ctx context.Context, p []byte) ([]byte, error) {
		ran.Add(1)
		started <- 0
		<-ctx.Done()
		return nil, ctx.Err()
	})
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	h.send(batchOf(
		codec.Message{ID: 1, JobType: "wait"},
		codec.Message{ID: 2, JobType: "wait"},
		codec.Message{ID: 3, JobType: "echo", Timeout: 20 * time.Millisecond, Payload: []byte("late")},
		codec.Message{ID: 4, JobType: "echo", Payload: []byte("four")},
	))
	<-started
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 2}) // queued: never runs
	time.Sleep(50 * time.Millisecond)                     // job 3's timeout elapses while it waits
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 1})
	got, _, _ := h.answers(1, 2, 3, 4)
	assert.Equal(t, codec.CodeCancelled, got[1].ErrCode)
	assert.Equal(t, codec.CodeCancelled, got[2].ErrCode)
	assert.Contains(t, got[2].ErrMessage, "cancelled by the host")
	assert.Equal(t, codec.CodeDeadline, got[3].ErrCode)
	assert.Equal(t, "four", string(got[4].Payload))
	assert.Equal(t, int32(1), ran.Load(), "the cancelled job's handler never ran")
}

// TestBatchConcurrencyBound: at most BatchConcurrency jobs of a batch run
// at once.
func TestBatchConcurrencyBound(t *testing.T) {
	s := &Server{BatchConcurrency: 3}
	var running, peak atomic.Int32
	s.Handle("busy", func(ctx context.Context, p []byte) ([]byte, error) {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		running.Add(-1)
		return p, nil
	})
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	var items []codec.Message
	var ids []uint64
	for i := range 30 {
		items = append(items, codec.Message{ID: uint64(i + 1), JobType: "busy", Payload: []byte{byte(i)}})
		ids = append(ids, uint64(i+1))
	}
	h.send(batchOf(items...))
	got, _, _ := h.answers(ids...)
	for i, id := range ids {
		assert.Equal(t, []byte{byte(i)}, got[id].Payload)
	}
	assert.Equal(t, int32(3), peak.Load())
}

// TestBatchItemPanics: a batch's job that panics is answered panic; the
// jobs already running finish and are answered; those still waiting never
// start and are not answered (the host fails or retries them as lost with
// the worker); the worker then leaves with the *PanicError.
func TestBatchItemPanics(t *testing.T) {
	s := &Server{BatchConcurrency: 2, DrainTimeout: 5 * time.Second}
	release := make(chan struct{})
	started := make(chan struct{})
	var ran atomic.Int32
	s.Handle("slow", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-release
		return []byte("finished"), nil
	})
	s.Handle("boom", func(ctx context.Context, p []byte) ([]byte, error) { panic("in a batch") })
	s.Handle("echo", func(ctx context.Context, p []byte) ([]byte, error) { ran.Add(1); return p, nil })
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	h.send(batchOf(
		codec.Message{ID: 1, JobType: "slow"},
		codec.Message{ID: 2, JobType: "boom"},
		codec.Message{ID: 3, JobType: "echo"},
		codec.Message{ID: 4, JobType: "echo"},
	))
	<-started
	got, _, _ := h.answers(2)
	assert.Equal(t, codec.CodePanic, got[2].ErrCode)
	assert.Equal(t, "panic: in a batch", got[2].ErrMessage)
	close(release)
	got, _, _ = h.answers(1)
	assert.Equal(t, "finished", string(got[1].Payload))
	var p *PanicError
	require.ErrorAs(t, h.result(10*time.Second), &p)
	assert.Equal(t, uint64(2), p.ID)
	h.quiet(50 * time.Millisecond) // nothing for 3 and 4
	assert.Zero(t, ran.Load(), "no job started after the panic")
}

func TestBatchDuplicateID(t *testing.T) {
	s := &Server{}
	s.Handle("wait", waitCtx(nil))
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	h.send(batchOf(codec.Message{ID: 7, JobType: "wait"}, codec.Message{ID: 7, JobType: "wait"}))
	err := h.result(5 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reused the id 7")
	got, _, _ := h.answers(7) // the job accepted first is cancelled as the conversation ends
	assert.Equal(t, codec.CodeCancelled, got[7].ErrCode)
}

// After shutdown, a batch's every job is answered shutting_down.
func TestBatchAfterShutdown(t *testing.T) {
	s := &Server{}
	s.Handle("wait", waitCtx(nil))
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	h.request(1, "wait", nil) // keeps the worker draining
	h.send(&codec.Message{Kind: codec.KindShutdown, Grace: time.Minute})
	h.send(batchOf(codec.Message{ID: 2, JobType: "echo"}, codec.Message{ID: 3, JobType: "nope"}))
	got, _, _ := h.answers(2, 3)
	assert.Equal(t, codec.CodeShuttingDown, got[2].ErrCode)
	assert.Equal(t, codec.CodeShuttingDown, got[3].ErrCode)
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 1})
	got, _, _ = h.answers(1)
	assert.Equal(t, codec.CodeCancelled, got[1].ErrCode)
	require.NoError(t, h.result(5*time.Second))
}

// TestBatchLoad: many batches of small jobs, with answers coalesced into
// batch responses under load; every job answered once, with its own bytes.
func TestBatchLoad(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	var ids []uint64
	want := map[uint64]string{}
	for b := range 20 {
		var items []codec.Message
		for i := range 50 {
			id := uint64(b*50 + i + 1)
			p := strings.Repeat(string(rune('a'+i%26)), i)
			items = append(items, codec.Message{ID: id, JobType: "echo", Payload: []byte(p)})
			ids = append(ids, id)
			want[id] = p
		}
		h.send(batchOf(items...))
	}
	got, batches, _ := h.answers(ids...)
	for id, p := range want {
		require.Equal(t, p, string(got[id].Payload), "job %d", id)
	}
	t.Logf("%d answers, %d batch responses", len(got), batches)
}

// The panic's stack reaches the log in one Write: the host makes one log
// record of it.
func TestPanicLoggedInOneWrite(t *testing.T) {
	var w countingLog
	s := &Server{Logger: log.New(&w, "", 0), DrainTimeout: 10 * time.Millisecond}
	s.Handle("boom", func(ctx context.Context, p []byte) ([]byte, error) { explode("once"); return nil, nil })
	h := startHost(t, s, hostOptions{})
	h.request(1, "boom", nil)
	assert.Equal(t, codec.CodePanic, h.next().ErrCode)
	var p *PanicError
	require.ErrorAs(t, h.result(5*time.Second), &p)
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Len(t, w.writes, 1)
	assert.Contains(t, w.writes[0], "worker.explode")
	assert.Contains(t, w.writes[0], "goroutine")
	assert.Contains(t, w.writes[0], "panic in job 1")
}

type countingLog struct {
	mu     sync.Mutex
	writes []string
}

func (c *countingLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

// A panic response too large for the host's frame limit keeps its code and
// message, without its detail.
func TestPanicDetailDroppedWhenTooLarge(t *testing.T) {
	s := &Server{DrainTimeout: 10 * time.Millisecond}
	s.Handle("boom", func(ctx context.Context, p []byte) ([]byte, error) { panic(strings.Repeat("v", 300)) })
	h := startHost(t, s, hostOptions{maxFrame: 400})
	h.request(1, "boom", nil)
	m := h.next()
	assert.Equal(t, codec.CodePanic, m.ErrCode)
	assert.Empty(t, m.Payload)
	var p *PanicError
	require.True(t, errors.As(h.result(5*time.Second), &p))
}

func mustMarshalT(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestBatchHeldResponseNotKeptBySlowItem: a runner holds the responses of
// a batch's short jobs (heldResponses), but not past holdFor: with one
// runner, the answer to a fast item arrives while the next item, slow,
// still runs.
func TestBatchHeldResponseNotKeptBySlowItem(t *testing.T) {
	s := &Server{BatchConcurrency: 1}
	release := make(chan struct{})
	s.Handle("echo", echo)
	s.Handle("wait", func(ctx context.Context, p []byte) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return p, nil
	})
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	h.send(batchOf(
		codec.Message{ID: 1, JobType: "echo", Payload: []byte("fast")},
		codec.Message{ID: 2, JobType: "wait", Payload: []byte("slow")},
	))
	got, _, _ := h.answers(1)
	assert.Equal(t, "fast", string(got[1].Payload))
	close(release)
	got, _, _ = h.answers(2)
	assert.Equal(t, "slow", string(got[2].Payload))
}

// TestBatchShortJobsShareFrames: the responses to a batch of short jobs
// leave in batch responses of many items, not one frame per item.
func TestBatchShortJobsShareFrames(t *testing.T) {
	s := &Server{BatchConcurrency: 1}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	const n = 200
	var items []codec.Message
	for i := range n {
		items = append(items, codec.Message{ID: uint64(i + 1), JobType: "echo", Payload: []byte{byte(i)}})
	}
	h.send(batchOf(items...))
	frames, answered := 0, map[uint64]bool{}
	for len(answered) < n {
		m := h.next()
		frames++
		switch m.Kind {
		case codec.KindResponse:
			answered[m.ID] = true
		case codec.KindBatchResponse:
			for _, it := range m.Items {
				require.False(t, answered[it.ID], "a second answer to %d", it.ID)
				answered[it.ID] = true
			}
		default:
			t.Fatalf("unexpected %v", m.Kind)
		}
	}
	assert.LessOrEqual(t, frames, 10, "%d frames for %d answers", frames, n)
}

// TestBatchPayloadsOutliveTheirFrame: the items of a batch frame large
// enough to have a buffer of its own keep their payloads in it (frameRef),
// so the buffer must not be reused while one of them runs or awaits its
// response: here a second large batch is read, run and answered while the
// first batch's items wait, and the first batch's echoes must still be
// their own payloads.
func TestBatchPayloadsOutliveTheirFrame(t *testing.T) {
	release := make(chan struct{})
	s := &Server{BatchConcurrency: 64}
	s.Handle("echo", echo)
	s.Handle("held", func(ctx context.Context, p []byte) ([]byte, error) {
		<-release
		return p, nil
	})
	h := startHost(t, s, hostOptions{features: codec.FeatureBatch})
	const items, size = 40, 2 << 10 // a frame of 80 KiB: past the reader's buffer
	batch := func(firstID uint64, jobType string, fill byte) (*codec.Message, map[uint64][]byte) {
		var ms []codec.Message
		want := map[uint64][]byte{}
		for i := range items {
			p := bytes.Repeat([]byte{fill + byte(i)}, size)
			id := firstID + uint64(i)
			ms = append(ms, codec.Message{ID: id, JobType: jobType, PayloadKind: codec.Blob, Payload: p})
			want[id] = p
		}
		return batchOf(ms...), want
	}
	first, wantFirst := batch(1, "held", 'a')
	h.send(first)
	for range 3 { // more frames of the same size, read while the first waits
		second, wantSecond := batch(1000, "echo", 'A')
		h.send(second)
		ids := make([]uint64, 0, items)
		for id := range wantSecond {
			ids = append(ids, id)
		}
		got, _, _ := h.answers(ids...)
		for id, p := range wantSecond {
			require.Equal(t, p, got[id].Payload, "second batch, job %d", id)
		}
	}
	close(release)
	ids := make([]uint64, 0, items)
	for id := range wantFirst {
		ids = append(ids, id)
	}
	got, _, _ := h.answers(ids...)
	for id, p := range wantFirst {
		require.Equal(t, string(p[:8]), string(got[id].Payload[:min(8, len(got[id].Payload))]), "first batch, job %d: its payload was overwritten", id)
		require.Equal(t, p, got[id].Payload, "first batch, job %d", id)
	}
}
