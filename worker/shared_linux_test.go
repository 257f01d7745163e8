//go:build linux

package worker

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// sharedHost is a testHost with the host's side of a shared region.
type sharedHost struct {
	*testHost
	shm *sharedmem.Host
}

// startShared serves s over pipes, announcing a region of size bytes that
// the worker maps as Serve maps fd 5 (mapErr, if not nil, makes it fail).
func startShared(t *testing.T, s *Server, size int, maxFrame uint32, mapErr error) *sharedHost {
	t.Helper()
	return startSharedFeatures(t, s, size, maxFrame, mapErr, 0)
}

// startSharedFeatures is startShared with features announced in hello.
func startSharedFeatures(t *testing.T, s *Server, size int, maxFrame uint32, mapErr error, features codec.Features) *sharedHost {
	t.Helper()
	f, shm, err := sharedmem.Create("worker-test", size)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close(); shm.Close() })
	h := startHost(t, s, hostOptions{
		features: features,
		maxFrame: maxFrame,
		shared:   uint64(shm.Size()),
		mapShared: func(size uint64) (*region, error) {
			if mapErr != nil {
				return nil, mapErr
			}
			return sharedmem.Map(int(f.Fd()), size)
		},
	})
	return &sharedHost{testHost: h, shm: shm}
}

// requestShared sends payload through the region.
func (h *sharedHost) requestShared(id uint64, jobType string, payload []byte) {
	h.t.Helper()
	off, dst, ok := h.shm.Reserve(id, len(payload))
	require.True(h.t, ok, "no room for request %d", id)
	copy(dst, payload)
	h.shm.Copied()
	h.send(&codec.Message{Kind: codec.KindRequest, ID: id, JobType: jobType, Shared: true,
		Span: codec.Span{Offset: off, Length: uint64(len(payload))}})
}

// payload returns a response's payload, read from the region if it is
// there, and frees the request's memory.
func (h *sharedHost) payload(m codec.Message) []byte {
	h.t.Helper()
	h.shm.Release(m.ID)
	if !m.Shared {
		return m.Payload
	}
	b, err := h.shm.Response(m.Span.Offset, m.Span.Length)
	require.NoError(h.t, err)
	out := bytes.Clone(b)
	h.shm.Consumed()
	return out
}

func shaHandler(ctx context.Context, p []byte) ([]byte, error) {
	sum := sha512.Sum512(p)
	return sum[:], nil
}

func TestSharedRegionCarriesLargePayloads(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	s.Handle("sha", shaHandler)
	HandleValue(s, "len", func(ctx context.Context, in []byte) (int, error) { return len(in), nil })
	h := startShared(t, s, 8<<20, 0, nil)
	require.Equal(t, uint64(8<<20), h.ready.SharedSize, "the worker mapped the region")

	// Rounds of 3 jobs in flight, 1 MiB each way, so that the worker must
	// reuse response memory the host consumed: 30 MiB through a region
	// with under 4 MiB per direction.
	for round := range 10 {
		want := map[uint64][]byte{}
		for i := range 3 {
			id := uint64(round*3 + i + 1)
			p := bytes.Repeat([]byte{byte(id)}, 1<<20)
			p[0] = byte(round)
			want[id] = p
			h.requestShared(id, "echo", p)
		}
		for range 3 {
			m := h.next()
			require.Empty(t, m.ErrCode, m.ErrMessage)
			assert.True(t, m.Shared, "a 1 MiB result goes through the region")
			assert.Equal(t, want[m.ID], h.payload(m), "job %d", m.ID)
			delete(want, m.ID)
		}
	}

	// A small result travels in the frame.
	p := bytes.Repeat([]byte("x"), 200<<10)
	h.requestShared(100, "sha", p)
	m := h.next()
	assert.False(t, m.Shared)
	sum := sha512.Sum512(p)
	assert.Equal(t, sum[:], h.payload(m))

	// VALUE payloads too.
	v, err := msgpack.Marshal(p)
	require.NoError(t, err)
	off, dst, ok := h.shm.Reserve(101, len(v))
	require.True(t, ok)
	copy(dst, v)
	h.shm.Copied()
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 101, JobType: "len", PayloadKind: codec.Value, Shared: true,
		Span: codec.Span{Offset: off, Length: uint64(len(v))}})
	m = h.next()
	require.Empty(t, m.ErrCode, m.ErrMessage)
	var n int
	require.NoError(t, decodeValue(h.payload(m), &n))
	assert.Equal(t, len(p), n)
}

func TestSharedRegionNeverMakesAResultFit(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startShared(t, s, 4<<20, 128<<10, nil)
	h.requestShared(1, "echo", make([]byte, 200<<10))
	m := h.next()
	assert.Equal(t, codec.CodeTooLarge, m.ErrCode, "over the host's frame limit, whatever the region")
	h.payload(m)
	h.requestShared(2, "echo", make([]byte, 100<<10))
	m = h.next()
	require.Empty(t, m.ErrCode)
	assert.True(t, m.Shared)
	assert.Len(t, h.payload(m), 100<<10)
}

func TestSharedRegionThatFailsToMap(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startShared(t, s, 4<<20, 0, errors.New("no such region"))
	assert.Zero(t, h.ready.SharedSize, "the worker declines the region")
	h.request(1, "echo", make([]byte, 1<<20))
	m := h.next()
	require.Empty(t, m.ErrCode)
	assert.False(t, m.Shared, "without a region, results travel in frames")
	assert.Len(t, m.Payload, 1<<20)
}

func TestSharedPayloadWithoutRegion(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{})
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "echo", Shared: true, Span: codec.Span{Offset: 4096, Length: 10}})
	err := h.result(5 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not set up")
}

func TestSharedPayloadOutOfBounds(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startShared(t, s, 4<<20, 0, nil)
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "echo", Shared: true, Span: codec.Span{Offset: 1 << 40, Length: 10}})
	err := h.result(5 * time.Second)
	assert.ErrorIs(t, err, sharedmem.ErrBounds)
}

// TestSharedBatchAndChunks: a batch's items may each have their payload in
// the region, and their results, inside batch responses, and large chunks
// leave through it too; blocks are numbered in the order they appear on the
// stream, items in order, so the host frees them as it reads.
func TestSharedBatchAndChunks(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	s.Handle("stream", func(ctx context.Context, p []byte) ([]byte, error) {
		for i := range 4 {
			if err := Send(ctx, bytes.Repeat([]byte{byte(i)}, 300<<10)); err != nil {
				return nil, err
			}
		}
		return []byte("done"), nil
	})
	h := startSharedFeatures(t, s, 4<<20, 0, nil, codec.FeatureBatch|codec.FeatureStream)
	require.Equal(t, codec.FeatureBatch|codec.FeatureStream, h.ready.Features)
	for round := range 4 { // 4 rounds of 1.5 MiB each way through 2 MiB halves
		want := map[uint64][]byte{}
		var items []codec.Message
		for i := range 3 {
			id := uint64(round*10 + i + 1)
			p := bytes.Repeat([]byte{byte(id)}, 500<<10)
			want[id] = p
			off, dst, ok := h.shm.Reserve(id, len(p))
			require.True(t, ok)
			copy(dst, p)
			h.shm.Copied()
			items = append(items, codec.Message{Kind: codec.KindRequest, ID: id, JobType: "echo", Shared: true,
				Span: codec.Span{Offset: off, Length: uint64(len(p))}})
		}
		small := uint64(round*10 + 9)
		want[small] = []byte("small")
		items = append(items, codec.Message{Kind: codec.KindRequest, ID: small, JobType: "echo", Payload: []byte("small")})
		h.send(&codec.Message{Kind: codec.KindBatchRequest, Items: items})
		for len(want) > 0 {
			m := h.next()
			answers := []codec.Message{m}
			if m.Kind == codec.KindBatchResponse {
				answers = m.Items
			}
			for _, a := range answers {
				require.Empty(t, a.ErrCode, a.ErrMessage)
				assert.Equal(t, a.ID != small, a.Shared, "job %d", a.ID)
				assert.Equal(t, want[a.ID], h.payload(a), "job %d", a.ID)
				delete(want, a.ID)
			}
		}
	}
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 100, JobType: "stream", Credit: 4})
	for i := range 4 {
		m := h.next()
		require.Equal(t, codec.KindChunk, m.Kind)
		require.True(t, m.Shared, "a 300 KiB chunk goes through the region")
		b, err := h.shm.Response(m.Span.Offset, m.Span.Length)
		require.NoError(t, err)
		assert.Equal(t, bytes.Repeat([]byte{byte(i)}, 300<<10), b)
		h.shm.Consumed()
	}
	m := h.next()
	assert.Equal(t, "done", string(m.Payload))
}
