package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/procpool/procpool/codec"
)

var (
	// ErrNotStreaming is returned by Send for a job whose host did not ask
	// for partial results (JobInfo.Streaming is false), and for a context
	// that is not a job's.
	ErrNotStreaming = errors.New("worker: the host did not ask for this job's partial results")
	// ErrStreamClosed is returned by Send once the job's handler has
	// returned: its response ended the stream.
	ErrStreamClosed = errors.New("worker: the job's stream ended with its response")
	// ErrChunkTooLarge is returned by Send for a chunk that would not fit in
	// a frame the host accepts.
	ErrChunkTooLarge = errors.New("worker: chunk too large for the host's frame limit")
)

// chunkEnvelope bounds what a chunk's frame holds besides its bytes: the
// array and kind, an id of up to 9 bytes, the payload kind and a bin32
// header.
const chunkEnvelope = 1 + 1 + 9 + 1 + 5

// Send sends chunk to the host as a partial result of the job whose handler
// received ctx, before the handler's final result. The host passes chunks to
// its caller in order, then the result, which ends the stream. In a BLOB
// handler chunk is bytes; in a VALUE handler it must be the msgpack
// encoding of one value (SendValue encodes one). Send copies chunk: the
// caller may reuse it once Send returns. A chunk of 64 KiB and more travels
// through the shared memory region when there is room, as results do.
//
// The host bounds the chunks it holds for its caller: the request grants a
// window of chunks, and the host grants more as its caller takes them. Send
// blocks while the window is used up, until the host grants more or ctx
// ends (it then returns ctx's error; the job's context ends when the host
// cancels the job, as always). It returns ErrNotStreaming when the host did
// not ask for partial results, ErrStreamClosed after the handler returned,
// and ErrChunkTooLarge for a chunk the host's frame limit refuses. Send may
// be called from several goroutines; chunks go out in the order their Sends
// returned.
func Send(ctx context.Context, chunk []byte) error {
	jc, ok := ctx.Value(jobKey{}).(*jobContext)
	if !ok || jc.stream == nil {
		return ErrNotStreaming
	}
	st := jc.stream
	if len(chunk)+chunkEnvelope > jc.c.out.cw.MaxFrame() {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrChunkTooLarge, len(chunk), jc.c.out.cw.MaxFrame())
	}
	if jc.kind == codec.Value {
		if len(chunk) == 0 {
			return fmt.Errorf("worker: sending a chunk: %w: an empty value", codec.ErrMalformed)
		}
		if err := codec.CheckValue(chunk); err != nil {
			return fmt.Errorf("worker: sending a chunk: %w", err)
		}
	}
	for {
		st.mu.Lock()
		if st.done {
			st.mu.Unlock()
			return ErrStreamClosed
		}
		if err := ctx.Err(); err != nil {
			st.mu.Unlock()
			return err
		}
		if st.credit > 0 {
			st.credit--
			j := jobPool.Get().(*job)
			j.kind, j.id, j.pk = codec.KindChunk, jc.id, jc.kind
			if len(chunk) > 0 {
				j.in = getPayload(len(chunk))
				copy(*j.in, chunk)
				j.result = *j.in
			}
			// Queued under st.mu, so that the job's response, which is
			// queued once done is set under it, comes after every chunk.
			writer := jc.c.out.enqueue(j)
			st.mu.Unlock()
			if writer {
				jc.c.out.drain()
			}
			return nil
		}
		wake := st.wake
		if wake == nil {
			wake = make(chan struct{})
			st.wake = wake
		}
		st.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		}
	}
}

// SendValue encodes v with msgpack and sends it as Send does: for VALUE
// handlers, whose chunks are values.
func SendValue(ctx context.Context, v any) error {
	e := getEncoder()
	defer putEncoder(e)
	if err := e.enc.Encode(v); err != nil {
		return fmt.Errorf("worker: encoding a chunk: %w", err)
	}
	return Send(ctx, e.buf.Bytes())
}

// grant adds n chunks to the job's window and wakes the Sends waiting for
// room.
func (jc *jobContext) grant(n uint32) {
	st := jc.stream
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return
	}
	st.credit += uint64(n)
	if st.wake != nil {
		close(st.wake)
		st.wake = nil
	}
}

// endStream marks the stream ended, before the job's response is queued:
// Sends fail from then on.
func (jc *jobContext) endStream() {
	st := jc.stream
	if st == nil {
		return
	}
	st.mu.Lock()
	st.done = true
	if st.wake != nil {
		close(st.wake)
		st.wake = nil
	}
	st.mu.Unlock()
}
