package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/codec"
)

// streamer sends n chunks "chunk-i", then answers "done". Each Send's error
// goes to errs.
func streamer(n int, errs chan<- error) HandlerFunc {
	return func(ctx context.Context, p []byte) ([]byte, error) {
		for i := range n {
			if err := Send(ctx, []byte(fmt.Sprintf("chunk-%d", i))); err != nil {
				errs <- err
				return nil, err
			}
		}
		return []byte("done"), nil
	}
}

// chunks reads n chunks of id from the worker.
func (h *testHost) chunks(id uint64, n int) []string {
	h.t.Helper()
	var out []string
	for len(out) < n {
		m := h.next()
		require.Equal(h.t, codec.KindChunk, m.Kind, "want chunk %d of %d, got %s %d (%s)", len(out), n, m.Kind, m.ID, m.ErrCode)
		require.Equal(h.t, id, m.ID)
		out = append(out, string(m.Payload))
	}
	return out
}

// TestStreamCredit: a streamed job sends as many chunks as its window
// allows, waits, and goes on as the host grants more; its response ends the
// stream.
func TestStreamCredit(t *testing.T) {
	s := &Server{}
	errs := make(chan error, 1)
	s.Handle("stream", streamer(5, errs))
	h := startHost(t, s, hostOptions{features: codec.FeatureStream})
	require.Equal(t, codec.FeatureStream, h.ready.Features)
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "stream", Credit: 2, PayloadKind: codec.Blob})
	assert.Equal(t, []string{"chunk-0", "chunk-1"}, h.chunks(1, 2))
	h.quiet(100 * time.Millisecond) // out of credit: Send waits
	h.send(&codec.Message{Kind: codec.KindPing, ID: 5})
	assert.Equal(t, codec.Message{Kind: codec.KindPong, ID: 5}, h.next(), "pings are answered meanwhile")
	h.send(&codec.Message{Kind: codec.KindCredit, ID: 1, Credit: 2})
	assert.Equal(t, []string{"chunk-2", "chunk-3"}, h.chunks(1, 2))
	h.quiet(50 * time.Millisecond)
	h.send(&codec.Message{Kind: codec.KindCredit, ID: 1, Credit: 10})
	assert.Equal(t, []string{"chunk-4"}, h.chunks(1, 1))
	m := h.next()
	assert.Equal(t, codec.KindResponse, m.Kind)
	assert.Equal(t, "done", string(m.Payload))
	h.send(&codec.Message{Kind: codec.KindCredit, ID: 1, Credit: 1}) // crossed the response: ignored
	h.send(&codec.Message{Kind: codec.KindCredit, ID: 99, Credit: 1})
	h.request(2, "stream", nil) // not streamed
	m = h.next()
	assert.Equal(t, codec.KindResponse, m.Kind)
	assert.Equal(t, codec.CodeHandler, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "did not ask")
	require.ErrorIs(t, <-errs, ErrNotStreaming)
}

// TestStreamCancelledMidStream: a cancel stops a Send waiting for credit,
// the job is answered cancelled, and no chunk follows.
func TestStreamCancelledMidStream(t *testing.T) {
	s := &Server{}
	errs := make(chan error, 1)
	s.Handle("stream", streamer(1000, errs))
	h := startHost(t, s, hostOptions{features: codec.FeatureStream | codec.FeatureBatch})
	h.send(batchOf(codec.Message{ID: 1, JobType: "stream", Credit: 3}))
	assert.Len(t, h.chunks(1, 3), 3)
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 1})
	m := h.next()
	assert.Equal(t, codec.KindResponse, m.Kind)
	assert.Equal(t, codec.CodeCancelled, m.ErrCode)
	require.ErrorIs(t, <-errs, context.Canceled)
	h.quiet(50 * time.Millisecond)
}

// A job's timeout ends a Send waiting for credit too.
func TestStreamDeadlineWhileWaiting(t *testing.T) {
	s := &Server{}
	errs := make(chan error, 1)
	s.Handle("stream", streamer(10, errs))
	h := startHost(t, s, hostOptions{features: codec.FeatureStream})
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "stream", Credit: 1, Timeout: 50 * time.Millisecond})
	h.chunks(1, 1)
	m := h.next()
	assert.Equal(t, codec.CodeDeadline, m.ErrCode)
	require.ErrorIs(t, <-errs, context.DeadlineExceeded)
}

// TestStreamRules: a Send after the handler returned fails (its response
// ended the stream); VALUE handlers send values, checked; a chunk larger
// than the host's frame limit is refused without using credit; a credit
// window without the stream feature does not stream.
func TestStreamRules(t *testing.T) {
	leaked := make(chan context.Context, 1)
	s := &Server{}
	s.Handle("leak", func(ctx context.Context, p []byte) ([]byte, error) {
		leaked <- ctx
		return nil, nil
	})
	HandleValue(s, "rows", func(ctx context.Context, n int) (string, error) {
		for i := range n {
			if err := SendValue(ctx, map[string]int{"row": i}); err != nil {
				return "", err
			}
		}
		if err := Send(ctx, []byte{0xc1}); !errors.Is(err, codec.ErrMalformed) {
			return "", fmt.Errorf("an invalid value chunk: %v", err)
		}
		return "end", nil
	})
	s.Handle("big", func(ctx context.Context, p []byte) ([]byte, error) {
		err := Send(ctx, make([]byte, 500))
		if !errors.Is(err, ErrChunkTooLarge) {
			return nil, fmt.Errorf("a 500-byte chunk with a 400-byte limit: %v", err)
		}
		return nil, Send(ctx, []byte("fits"))
	})
	h := startHost(t, s, hostOptions{features: codec.FeatureStream, maxFrame: 400})
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "leak", Credit: 5})
	assert.Equal(t, codec.KindResponse, h.next().Kind)
	assert.ErrorIs(t, Send(<-leaked, []byte("late")), ErrStreamClosed)

	h.send(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "rows", Credit: 5, PayloadKind: codec.Value, Payload: mustMarshalT(t, 2)})
	for i := range 2 {
		m := h.next()
		require.Equal(t, codec.KindChunk, m.Kind)
		assert.Equal(t, codec.Value, m.PayloadKind)
		assert.Equal(t, mustMarshalT(t, map[string]int{"row": i}), m.Payload)
	}
	m := h.next()
	require.Equal(t, codec.KindResponse, m.Kind, m.ErrMessage)
	assert.Empty(t, m.ErrCode, m.ErrMessage)
	assert.Equal(t, mustMarshalT(t, "end"), m.Payload)

	h.send(&codec.Message{Kind: codec.KindRequest, ID: 3, JobType: "big", Credit: 1})
	assert.Equal(t, []string{"fits"}, h.chunks(3, 1), "the refused chunk took no credit")
	m = h.next()
	assert.Empty(t, m.ErrCode, m.ErrMessage)

	// The host announced no stream feature: a credit window is ignored.
	s2 := &Server{}
	errs := make(chan error, 1)
	s2.Handle("stream", streamer(1, errs))
	h2 := startHost(t, s2, hostOptions{features: codec.FeatureMeta})
	h2.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "stream", Credit: 5})
	m = h2.next()
	assert.Equal(t, codec.KindResponse, m.Kind)
	require.ErrorIs(t, <-errs, ErrNotStreaming)
	assert.ErrorIs(t, Send(context.Background(), nil), ErrNotStreaming)
}

// Several goroutines may Send for one job; the response follows every
// chunk they sent.
func TestStreamConcurrentSends(t *testing.T) {
	s := &Server{}
	s.Handle("fan", func(ctx context.Context, p []byte) ([]byte, error) {
		errs := make(chan error, 4)
		for g := range 4 {
			go func() {
				for i := range 25 {
					if err := Send(ctx, []byte(fmt.Sprintf("%d.%d", g, i))); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				return nil, err
			}
		}
		return []byte("all"), nil
	})
	h := startHost(t, s, hostOptions{features: codec.FeatureStream})
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "fan", Credit: 7})
	seen := map[string]bool{}
	for len(seen) < 100 {
		m := h.next()
		require.Equal(t, codec.KindChunk, m.Kind, "chunk %d: %s %s", len(seen), m.Kind, m.ErrMessage)
		require.False(t, seen[string(m.Payload)])
		seen[string(m.Payload)] = true
		if len(seen)%7 == 0 {
			h.send(&codec.Message{Kind: codec.KindCredit, ID: 1, Credit: 7})
		}
	}
	m := h.next()
	assert.Equal(t, "all", string(m.Payload))
}

func TestInfo(t *testing.T) {
	infos := make(chan JobInfo, 4)
	s := &Server{}
	s.Handle("info", func(ctx context.Context, p []byte) ([]byte, error) {
		sub, cancel := context.WithCancel(ctx) // derived contexts know the job too
		defer cancel()
		info, ok := Info(sub)
		if !ok {
			return nil, errors.New("no job info")
		}
		infos <- info
		return nil, nil
	})
	h := startHost(t, s, hostOptions{features: codec.AllFeatures})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	start := time.Now()
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1 << 63, JobType: "info", Timeout: time.Hour, Attempt: 3,
		TraceParent: tp, TraceState: "congo=t61rcWkgMzE", Credit: 2})
	h.next()
	info := <-infos
	assert.Equal(t, uint64(1<<63), info.ID)
	assert.Equal(t, "info", info.JobType)
	assert.Equal(t, 3, info.Attempt)
	assert.Equal(t, tp, info.TraceParent)
	assert.Equal(t, "congo=t61rcWkgMzE", info.TraceState)
	assert.True(t, info.Streaming)
	assert.WithinDuration(t, start.Add(time.Hour), info.Deadline, time.Minute)

	h.request(2, "info", nil) // the base protocol's request
	h.next()
	info = <-infos
	assert.Equal(t, JobInfo{ID: 2, JobType: "info", Attempt: 1}, info)

	_, ok := Info(context.Background())
	assert.False(t, ok)
}

func TestTraceCarrier(t *testing.T) {
	c := JobInfo{TraceParent: "tp", TraceState: "ts"}.Carrier()
	assert.Equal(t, "tp", c.Get("traceparent"))
	assert.Equal(t, "ts", c.Get("TraceState"))
	assert.Equal(t, "", c.Get("baggage"))
	assert.Equal(t, []string{"traceparent", "tracestate"}, c.Keys())
	c.Set("Traceparent", "new")
	c.Set("baggage", "ignored")
	assert.Equal(t, "new", c.TraceParent)
	assert.Equal(t, []string{"traceparent"}, (&TraceCarrier{TraceParent: "x"}).Keys())
	// The shape of OpenTelemetry's propagation.TextMapCarrier.
	var _ interface {
		Get(string) string
		Set(string, string)
		Keys() []string
	} = c
	assert.True(t, strings.HasPrefix(JobInfo{}.Carrier().Get("traceparent"), ""))
}
