package worker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
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

func echo(ctx context.Context, p []byte) ([]byte, error) { return p, nil }

// waitCtx blocks until ctx ends, after closing started (if not nil).
func waitCtx(started chan<- struct{}) HandlerFunc {
	return func(ctx context.Context, p []byte) ([]byte, error) {
		if started != nil {
			close(started)
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
}

func received(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out")
	}
}

func TestHandshake(t *testing.T) {
	s := &Server{MaxFrame: 123456}
	s.Handle("b", echo)
	s.Handle("a", echo)
	HandleValue(s, "c", func(ctx context.Context, in int) (int, error) { return in, nil })
	h := startHost(t, s, hostOptions{})
	assert.Equal(t, uint32(codec.Version), h.ready.Version)
	assert.Equal(t, uint32(123456), h.ready.MaxFrame)
	assert.Equal(t, os.Getpid(), h.ready.PID)
	assert.Equal(t, []string{"a", "b", "c"}, h.ready.JobTypes)
	assert.Equal(t, []string{"a", "b", "c"}, s.JobTypes())

	h2 := startHost(t, &Server{}, hostOptions{})
	assert.Equal(t, uint32(codec.DefaultMaxFrame), h2.ready.MaxFrame)
	assert.Empty(t, h2.ready.JobTypes)
}

func TestHandshakeVersionMismatch(t *testing.T) {
	h := startRaw(t, &Server{}, hostOptions{})
	h.send(&codec.Message{Kind: codec.KindHello, Version: codec.Version + 1})
	m := h.next()
	assert.Equal(t, codec.KindReady, m.Kind)
	assert.Equal(t, uint32(codec.Version), m.Version)
	err := h.result(5 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "version")
}

func TestHandshakeNotHello(t *testing.T) {
	h := startRaw(t, &Server{}, hostOptions{})
	h.send(&codec.Message{Kind: codec.KindPing, ID: 1})
	err := h.result(5 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "before hello")
}

func TestEOFBeforeHello(t *testing.T) {
	h := startRaw(t, &Server{}, hostOptions{})
	h.toW.Close()
	assert.NoError(t, h.result(5*time.Second))
}

func TestBlobEcho(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{})
	sizes := []int{0, 1, 511, 512, 513, 1 << 10, 64 << 10, 256 << 10, 256<<10 + 1, 1 << 20}
	for i, n := range sizes {
		p := make([]byte, n)
		for k := range p {
			p[k] = byte(k*7 + i)
		}
		h.request(uint64(i+1), "echo", p)
		m := h.next()
		require.Equal(t, codec.KindResponse, m.Kind)
		require.Equal(t, uint64(i+1), m.ID)
		require.Empty(t, m.ErrCode, m.ErrMessage)
		require.Equal(t, codec.Blob, m.PayloadKind)
		require.Equal(t, n, len(m.Payload))
		require.True(t, bytes.Equal(p, m.Payload), "size %d", n)
	}
}

// The payload a handler receives must stay intact while the reader reads
// further frames into its shared buffer.
func TestBlobPayloadStableWhileReading(t *testing.T) {
	s := &Server{}
	release := make(chan struct{})
	s.Handle("hold", func(ctx context.Context, p []byte) ([]byte, error) {
		<-release
		return p, nil
	})
	h := startHost(t, s, hostOptions{})
	const n = 50
	for i := range n {
		h.request(uint64(i), "hold", bytes.Repeat([]byte{byte(i)}, 1000+i))
	}
	close(release)
	for range n {
		m := h.next()
		require.Empty(t, m.ErrCode)
		require.Equal(t, bytes.Repeat([]byte{byte(m.ID)}, 1000+int(m.ID)), m.Payload)
	}
}

type point struct {
	X, Y int
	Name string
	Tags []string
}

func TestValueRoundTrip(t *testing.T) {
	s := &Server{}
	HandleValue(s, "move", func(ctx context.Context, p point) (point, error) {
		p.X++
		p.Y--
		p.Name = strings.ToUpper(p.Name)
		p.Tags = append(p.Tags, "moved")
		return p, nil
	})
	HandleValue(s, "digest", func(ctx context.Context, n int) ([4]byte, error) {
		return [4]byte{byte(n), 2, 3, 4}, nil
	})
	h := startHost(t, s, hostOptions{})

	in, err := msgpack.Marshal(point{X: 1, Y: 2, Name: "p", Tags: []string{"a"}})
	require.NoError(t, err)
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "move", PayloadKind: codec.Value, Payload: in})
	m := h.next()
	require.Empty(t, m.ErrCode, m.ErrMessage)
	require.Equal(t, codec.Value, m.PayloadKind)
	var out point
	require.NoError(t, msgpack.Unmarshal(m.Payload, &out))
	assert.Equal(t, point{X: 2, Y: 1, Name: "P", Tags: []string{"a", "moved"}}, out)

	in, _ = msgpack.Marshal(9)
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "digest", PayloadKind: codec.Value, Payload: in})
	m = h.next()
	require.Empty(t, m.ErrCode, m.ErrMessage)
	var d []byte
	require.NoError(t, msgpack.Unmarshal(m.Payload, &d))
	assert.Equal(t, []byte{9, 2, 3, 4}, d)

	// A VALUE handler also accepts a msgpack encoding sent as a blob.
	in, _ = msgpack.Marshal(7)
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 3, JobType: "digest", PayloadKind: codec.Blob, Payload: in})
	m = h.next()
	require.Empty(t, m.ErrCode, m.ErrMessage)
	require.NoError(t, msgpack.Unmarshal(m.Payload, &d))
	assert.Equal(t, []byte{7, 2, 3, 4}, d)
}

func TestValueBadPayload(t *testing.T) {
	s := &Server{}
	called := false
	HandleValue(s, "move", func(ctx context.Context, p point) (point, error) {
		called = true
		return p, nil
	})
	h := startHost(t, s, hostOptions{})
	in, _ := msgpack.Marshal("not a point")
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "move", PayloadKind: codec.Value, Payload: in})
	m := h.next()
	assert.Equal(t, codec.CodeBadPayload, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "worker.point")
	assert.False(t, called)

	h.send(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "move", Payload: []byte{0xc1}})
	m = h.next()
	assert.Equal(t, codec.CodeBadPayload, m.ErrCode)
}

func TestValueErrors(t *testing.T) {
	s := &Server{}
	HandleValue(s, "fail", func(ctx context.Context, n int) (int, error) {
		return 0, Errorf("odd", "number %d", n)
	})
	HandleValue(s, "unencodable", func(ctx context.Context, n int) (chan int, error) {
		return make(chan int), nil
	})
	h := startHost(t, s, hostOptions{})
	in, _ := msgpack.Marshal(3)
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "fail", PayloadKind: codec.Value, Payload: in})
	m := h.next()
	assert.Equal(t, "odd", m.ErrCode)
	assert.Equal(t, "number 3", m.ErrMessage)

	h.send(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "unencodable", PayloadKind: codec.Value, Payload: in})
	m = h.next()
	assert.Equal(t, codec.CodeHandler, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "encoding result")
}

func TestUnknownJobType(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{})
	h.request(1, "nope", []byte("x"))
	m := h.next()
	assert.Equal(t, uint64(1), m.ID)
	assert.Equal(t, codec.CodeUnknownJobType, m.ErrCode)
	assert.Contains(t, m.ErrMessage, `"nope"`)
	h.request(2, "echo", []byte("still here"))
	m = h.next()
	assert.Equal(t, uint64(2), m.ID)
	assert.Equal(t, "still here", string(m.Payload))
}

var errPlain = errors.New("plain failure")

func TestHandlerErrors(t *testing.T) {
	s := &Server{}
	s.Handle("plain", func(ctx context.Context, p []byte) ([]byte, error) { return nil, errPlain })
	s.Handle("coded", func(ctx context.Context, p []byte) ([]byte, error) {
		return nil, Errorf("quota", "over by %d", 3)
	})
	s.Handle("wrapped", func(ctx context.Context, p []byte) ([]byte, error) {
		return nil, fmt.Errorf("step 2: %w", Errorf("quota", "over"))
	})
	s.Handle("nocode", func(ctx context.Context, p []byte) ([]byte, error) {
		return nil, &Error{Message: "no code"}
	})
	s.Handle("result_and_error", func(ctx context.Context, p []byte) ([]byte, error) {
		return []byte("ignored"), errPlain
	})
	h := startHost(t, s, hostOptions{})
	cases := []struct{ jobType, code, msg string }{
		{"plain", codec.CodeHandler, "plain failure"},
		{"coded", "quota", "over by 3"},
		{"wrapped", "quota", "step 2: quota: over"},
		{"nocode", codec.CodeHandler, "no code"},
		{"result_and_error", codec.CodeHandler, "plain failure"},
	}
	for i, c := range cases {
		h.request(uint64(i), c.jobType, nil)
		m := h.next()
		assert.Equal(t, uint64(i), m.ID)
		assert.Equal(t, c.code, m.ErrCode, c.jobType)
		assert.Equal(t, c.msg, m.ErrMessage, c.jobType)
		assert.Empty(t, m.Payload, c.jobType)
	}
}

func TestErrorf(t *testing.T) {
	err := Errorf("code", "reading %s: %w", "x", io.ErrUnexpectedEOF)
	assert.Equal(t, "code: reading x: unexpected EOF", err.Error())
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "code", e.Code)
	assert.Equal(t, "reading x: unexpected EOF", e.Message)

	err = Errorf("c", "a %w b %w", io.EOF, io.ErrClosedPipe)
	assert.ErrorIs(t, err, io.EOF)
	assert.ErrorIs(t, err, io.ErrClosedPipe)

	assert.Nil(t, errors.Unwrap(Errorf("c", "plain")))
	assert.Equal(t, "m", (&Error{Message: "m"}).Error())
}

func TestCancelRunningJob(t *testing.T) {
	s := &Server{}
	started := make(chan struct{})
	s.Handle("wait", waitCtx(started))
	h := startHost(t, s, hostOptions{})
	h.request(5, "wait", nil)
	received(t, started)
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 5})
	m := h.next()
	assert.Equal(t, uint64(5), m.ID)
	assert.Equal(t, codec.CodeCancelled, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "cancelled by the host")
	// A late cancel of the same id is ignored.
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 5})
	h.quiet(50 * time.Millisecond)
}

// A cancelled handler that returns a result anyway is answered with it.
func TestCancelledJobReturningResult(t *testing.T) {
	s := &Server{}
	started := make(chan struct{})
	s.Handle("stubborn", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return []byte("done anyway"), nil
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "stubborn", nil)
	received(t, started)
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 1})
	m := h.next()
	assert.Empty(t, m.ErrCode)
	assert.Equal(t, "done anyway", string(m.Payload))
}

func TestCancelUnknownIDIgnored(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{})
	h.send(&codec.Message{Kind: codec.KindCancel, ID: 999})
	h.request(1, "echo", []byte("x"))
	m := h.next()
	assert.Equal(t, uint64(1), m.ID)
	assert.Equal(t, "x", string(m.Payload))
	h.quiet(50 * time.Millisecond)
}

func TestTimeout(t *testing.T) {
	s := &Server{}
	s.Handle("wait", waitCtx(nil))
	s.Handle("deadline", func(ctx context.Context, p []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		return []byte(time.Until(d).Round(time.Second).String()), nil
	})
	h := startHost(t, s, hostOptions{})
	start := time.Now()
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "wait", Timeout: 30 * time.Millisecond})
	m := h.next()
	assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	assert.Equal(t, codec.CodeDeadline, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "30ms")

	h.send(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "deadline", Timeout: time.Minute})
	m = h.next()
	assert.Empty(t, m.ErrCode, m.ErrMessage)
	assert.Equal(t, "1m0s", string(m.Payload))
	h.request(3, "deadline", nil)
	m = h.next()
	assert.Equal(t, "no deadline", m.ErrMessage)
}

func TestPingWhileJobRuns(t *testing.T) {
	s := &Server{}
	started, release := make(chan struct{}), make(chan struct{})
	s.Handle("block", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-release
		return []byte("ok"), nil
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "block", nil)
	received(t, started)
	for seq := uint64(1); seq <= 3; seq++ {
		h.send(&codec.Message{Kind: codec.KindPing, ID: seq})
		m := h.next()
		assert.Equal(t, codec.KindPong, m.Kind)
		assert.Equal(t, seq, m.ID)
	}
	close(release)
	m := h.next()
	assert.Equal(t, codec.KindResponse, m.Kind)
	assert.Equal(t, "ok", string(m.Payload))
}

func TestConcurrentJobs(t *testing.T) {
	s := &Server{}
	var inFlight, peak atomic.Int32
	s.Handle("work", func(ctx context.Context, p []byte) ([]byte, error) {
		n := inFlight.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(time.Duration(p[0]) * 100 * time.Microsecond)
		inFlight.Add(-1)
		return p, nil
	})
	h := startHost(t, s, hostOptions{})
	const n = 500
	go func() {
		for i := range n {
			p := make([]byte, 5+i%3000)
			p[0] = byte(rand.IntN(50))
			binary.BigEndian.PutUint32(p[1:], uint32(i))
			h.request(uint64(i), "work", p)
		}
	}()
	seen := make(map[uint64]bool)
	for range n {
		m := h.next()
		require.Empty(t, m.ErrCode, m.ErrMessage)
		require.False(t, seen[m.ID], "id %d answered twice", m.ID)
		seen[m.ID] = true
		require.Len(t, m.Payload, 5+int(m.ID)%3000)
		require.Equal(t, uint32(m.ID), binary.BigEndian.Uint32(m.Payload[1:]))
	}
	h.quiet(50 * time.Millisecond)
	assert.Greater(t, peak.Load(), int32(1), "jobs should overlap")
}

func TestResultTooLarge(t *testing.T) {
	s := &Server{}
	s.Handle("big", func(ctx context.Context, p []byte) ([]byte, error) { return make([]byte, 4096), nil })
	HandleValue(s, "bigv", func(ctx context.Context, n int) ([]byte, error) { return make([]byte, n), nil })
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{maxFrame: 1024})
	h.request(1, "big", nil)
	m := h.next()
	assert.Equal(t, codec.CodeTooLarge, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "1024")
	in, _ := msgpack.Marshal(2000)
	h.send(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "bigv", PayloadKind: codec.Value, Payload: in})
	m = h.next()
	assert.Equal(t, codec.CodeTooLarge, m.ErrCode)
	// The worker carries on.
	h.request(3, "echo", make([]byte, 900))
	m = h.next()
	assert.Empty(t, m.ErrCode)
	assert.Len(t, m.Payload, 900)
}

func TestPanic(t *testing.T) {
	s := &Server{DrainTimeout: 2 * time.Second}
	started, release := make(chan struct{}), make(chan struct{})
	s.Handle("slow", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-release
		return []byte("finished"), nil
	})
	s.Handle("boom", func(ctx context.Context, p []byte) ([]byte, error) {
		explode(string(p))
		return nil, nil
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "slow", nil)
	received(t, started)
	h.request(2, "boom", []byte("kaboom"))
	m := h.next()
	assert.Equal(t, uint64(2), m.ID)
	assert.Equal(t, codec.CodePanic, m.ErrCode)
	assert.Equal(t, "panic: kaboom", m.ErrMessage, "the first line only")
	assert.Equal(t, codec.Blob, m.PayloadKind)
	detail := string(m.Payload) // the stack, as the error's detail
	assert.True(t, strings.HasPrefix(detail, "panic: kaboom\n\n"), detail)
	assert.Contains(t, detail, "worker.explode")
	assert.NotContains(t, detail, "runtime/debug.Stack")

	// The other job may still finish within the drain time, and is answered.
	time.Sleep(20 * time.Millisecond)
	assert.True(t, h.running())
	close(release)
	m = h.next()
	assert.Equal(t, uint64(1), m.ID)
	assert.Equal(t, "finished", string(m.Payload))

	err := h.result(5 * time.Second)
	var p *PanicError
	require.ErrorAs(t, err, &p)
	assert.Equal(t, "boom", p.JobType)
	assert.Equal(t, uint64(2), p.ID)
	assert.Equal(t, "kaboom", p.Value)
	assert.Contains(t, string(p.Stack), "explode")
	assert.Contains(t, err.Error(), `"boom"`)
	assert.Equal(t, ExitPanic, exitCode(s, err))
}

func explode(msg string) { panic(msg) }

// After a panic, jobs still running past the drain time are cancelled.
func TestPanicCancelsStragglers(t *testing.T) {
	s := &Server{DrainTimeout: 50 * time.Millisecond}
	started := make(chan struct{})
	s.Handle("wait", waitCtx(started))
	s.Handle("boom", func(ctx context.Context, p []byte) ([]byte, error) {
		panic(fmt.Errorf("wrapped: %w", io.ErrShortWrite))
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "wait", nil)
	received(t, started)
	h.request(2, "boom", nil)
	m := h.next()
	assert.Equal(t, codec.CodePanic, m.ErrCode)
	m = h.next()
	assert.Equal(t, uint64(1), m.ID)
	assert.Equal(t, codec.CodeCancelled, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "panic")
	err := h.result(5 * time.Second)
	assert.ErrorIs(t, err, io.ErrShortWrite)
}

func TestGoexitInHandler(t *testing.T) {
	s := &Server{DrainTimeout: 10 * time.Millisecond}
	s.Handle("exit", func(ctx context.Context, p []byte) ([]byte, error) {
		runtime.Goexit()
		return nil, nil
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "exit", nil)
	m := h.next()
	assert.Equal(t, codec.CodePanic, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "Goexit")
	var p *PanicError
	require.ErrorAs(t, h.result(5*time.Second), &p)
}

func TestShutdownWaitsForRunningJobs(t *testing.T) {
	s := &Server{}
	started, release := make(chan struct{}), make(chan struct{})
	var cancelled atomic.Bool
	s.Handle("block", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-release
		cancelled.Store(ctx.Err() != nil)
		return []byte("ok"), nil
	})
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{})
	h.request(1, "block", nil)
	received(t, started)
	h.send(&codec.Message{Kind: codec.KindShutdown, Grace: time.Minute})
	h.request(2, "echo", []byte("late"))
	m := h.next()
	assert.Equal(t, uint64(2), m.ID)
	assert.Equal(t, codec.CodeShuttingDown, m.ErrCode)
	// Pings are still answered while draining.
	h.send(&codec.Message{Kind: codec.KindPing, ID: 9})
	assert.Equal(t, codec.KindPong, h.next().Kind)
	time.Sleep(20 * time.Millisecond)
	assert.True(t, h.running(), "ServeConn returned before the running job finished")

	close(release)
	m = h.next()
	assert.Equal(t, uint64(1), m.ID)
	assert.Equal(t, "ok", string(m.Payload))
	assert.NoError(t, h.result(5*time.Second))
	assert.False(t, cancelled.Load())
	assert.Equal(t, ExitOK, exitCode(s, nil))
}

// The host closes fd 3 right after shutdown: the end of the stream does not
// cut the grace short, and the running job still finishes with its result.
func TestShutdownThenEOFDrains(t *testing.T) {
	s := &Server{DrainTimeout: 10 * time.Millisecond}
	started, release := make(chan struct{}), make(chan struct{})
	var cancelled atomic.Bool
	s.Handle("block", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-release
		cancelled.Store(ctx.Err() != nil)
		return []byte("ok"), nil
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "block", nil)
	received(t, started)
	h.send(&codec.Message{Kind: codec.KindShutdown, Grace: time.Minute})
	h.toW.Close()
	time.Sleep(50 * time.Millisecond)
	assert.True(t, h.running(), "ServeConn returned at the end of the stream, before the running job finished")
	close(release)
	m := h.next()
	assert.Equal(t, uint64(1), m.ID)
	assert.Equal(t, "", m.ErrCode)
	assert.Equal(t, "ok", string(m.Payload))
	assert.NoError(t, h.result(5*time.Second))
	assert.False(t, cancelled.Load(), "the running job was cancelled")
}

func TestShutdownIdle(t *testing.T) {
	h := startHost(t, &Server{}, hostOptions{})
	h.send(&codec.Message{Kind: codec.KindShutdown, Grace: time.Minute})
	assert.NoError(t, h.result(5*time.Second))
}

func TestShutdownGraceExpires(t *testing.T) {
	s := &Server{}
	started := make(chan struct{})
	s.Handle("wait", waitCtx(started))
	h := startHost(t, s, hostOptions{})
	h.request(1, "wait", nil)
	received(t, started)
	start := time.Now()
	h.send(&codec.Message{Kind: codec.KindShutdown, Grace: 50 * time.Millisecond})
	m := h.next()
	assert.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)
	assert.Equal(t, codec.CodeCancelled, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "grace")
	assert.NoError(t, h.result(5*time.Second))
}

func TestHostEOFCancelsJobs(t *testing.T) {
	s := &Server{DrainTimeout: 5 * time.Second}
	started := make(chan struct{})
	var sawCancel atomic.Bool
	s.Handle("wait", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		sawCancel.Store(true)
		return nil, ctx.Err()
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "wait", nil)
	received(t, started)
	start := time.Now()
	h.toW.Close()
	assert.NoError(t, h.result(5*time.Second))
	assert.Less(t, time.Since(start), time.Second)
	assert.True(t, sawCancel.Load())
	// The cancelled job's answer was still written.
	m := h.next()
	assert.Equal(t, codec.CodeCancelled, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "host closed")
}

// A handler ignoring its context does not hold ServeConn past DrainTimeout.
func TestHostEOFAbandonsStubbornJobs(t *testing.T) {
	s := &Server{DrainTimeout: 30 * time.Millisecond}
	started, release := make(chan struct{}), make(chan struct{})
	s.Handle("stubborn", func(ctx context.Context, p []byte) ([]byte, error) {
		close(started)
		<-release
		return nil, nil
	})
	h := startHost(t, s, hostOptions{})
	h.request(1, "stubborn", nil)
	received(t, started)
	h.toW.Close()
	assert.NoError(t, h.result(5*time.Second))
	close(release) // the handler returns; its answer is dropped
	h.quiet(50 * time.Millisecond)
}

func TestContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{}
	started := make(chan struct{})
	s.Handle("wait", waitCtx(started))
	h := startHost(t, s, hostOptions{ctx: ctx})
	h.request(1, "wait", nil)
	received(t, started)
	cancel()
	assert.ErrorIs(t, h.result(5*time.Second), context.Canceled)
	assert.Equal(t, codec.CodeCancelled, h.next().ErrCode)
}

func TestHostStopsReading(t *testing.T) {
	s := &Server{}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{})
	h.toHost.CloseWithError(io.ErrClosedPipe) // as if the host closed its end
	h.request(1, "echo", []byte("x"))
	assert.NoError(t, h.result(5*time.Second))
}

func TestMalformedFrame(t *testing.T) {
	h := startHost(t, &Server{}, hostOptions{})
	_, err := h.toW.Write([]byte{0, 0, 0, 3, 0xc1, 0xc1, 0xc1})
	require.NoError(t, err)
	err = h.result(5 * time.Second)
	assert.ErrorIs(t, err, codec.ErrMalformed)
	assert.Equal(t, ExitError, exitCode(&Server{Logger: testLogger(t)}, err))
}

func TestOversizedFrame(t *testing.T) {
	s := &Server{MaxFrame: 1000}
	s.Handle("echo", echo)
	h := startHost(t, s, hostOptions{})
	h.request(1, "echo", make([]byte, 900))
	assert.Len(t, h.next().Payload, 900)
	go func() { // blocks until the worker stops reading and closes its end
		h.wmu.Lock()
		defer h.wmu.Unlock()
		_ = h.w.Write(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "echo", Payload: make([]byte, 1001)})
	}()
	assert.ErrorIs(t, h.result(5*time.Second), codec.ErrFrameTooLarge)
}

func TestUnexpectedMessage(t *testing.T) {
	h := startHost(t, &Server{}, hostOptions{})
	h.send(&codec.Message{Kind: codec.KindPong, ID: 1})
	err := h.result(5 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unexpected pong")
}

func TestDuplicateRunningID(t *testing.T) {
	s := &Server{DrainTimeout: time.Second}
	started := make(chan struct{})
	s.Handle("wait", waitCtx(started))
	h := startHost(t, s, hostOptions{})
	h.request(1, "wait", nil)
	received(t, started)
	h.request(1, "wait", nil)
	err := h.result(5 * time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reused")
}

func TestHandlePanics(t *testing.T) {
	s := &Server{}
	s.Handle("a", echo)
	assert.Panics(t, func() { s.Handle("a", echo) })
	assert.Panics(t, func() { s.Handle("", echo) })
	assert.Panics(t, func() { s.Handle("b", nil) })
	assert.Panics(t, func() { HandleValue[int, int](s, "c", nil) })
	assert.Panics(t, func() {
		HandleValue(s, "a", func(ctx context.Context, in int) (int, error) { return 0, nil })
	})
}

func TestPanicMessageTrimmed(t *testing.T) {
	p := &PanicError{Value: "v", Stack: []byte("goroutine 1 [running]:\nruntime/debug.Stack()\n\t/x.go:1\npanic({0x1, 0x2})\n\t/panic.go:1\nmain.f()\n\t/f.go:3 +0x1\n")}
	assert.Equal(t, "panic: v\n\nmain.f()\n\t/f.go:3 +0x1", string(panicDetail(p)))
	assert.Equal(t, "panic: v", panicSummary(p))
	p.Value = "two\r\nlines"
	assert.Equal(t, "panic: two [...]", panicSummary(p))
	assert.True(t, strings.HasPrefix(string(panicDetail(p)), "panic: two\r\nlines\n\nmain.f()"))
}

func TestHandlerCountIsSnapshot(t *testing.T) {
	// Handlers registered while serving are not served by that conversation.
	s := &Server{}
	s.Handle("a", echo)
	h := startHost(t, s, hostOptions{})
	s.Handle("b", echo)
	h.request(1, "b", nil)
	assert.Equal(t, codec.CodeUnknownJobType, h.next().ErrCode)
}

// Many goroutines writing at once must produce well-formed, complete frames.
func TestCoalescedWrites(t *testing.T) {
	s := &Server{}
	var wg sync.WaitGroup
	gate := make(chan struct{})
	s.Handle("gate", func(ctx context.Context, p []byte) ([]byte, error) {
		wg.Done()
		<-gate
		return p, nil
	})
	h := startHost(t, s, hostOptions{})
	const n = 200
	wg.Add(n)
	for i := range n {
		h.request(uint64(i), "gate", bytes.Repeat([]byte{byte(i)}, 100+i*50))
	}
	wg.Wait()
	close(gate)
	for range n {
		m := h.next()
		require.Equal(t, bytes.Repeat([]byte{byte(m.ID)}, 100+int(m.ID)*50), m.Payload)
	}
}

func TestLongErrorMessageTruncated(t *testing.T) {
	s := &Server{}
	long := strings.Repeat("é", maxErrMessage) // 2 bytes each
	s.Handle("long", func(ctx context.Context, p []byte) ([]byte, error) { return nil, errors.New(long) })
	h := startHost(t, s, hostOptions{})
	h.request(1, "long", nil)
	m := h.next()
	assert.Equal(t, codec.CodeHandler, m.ErrCode)
	assert.LessOrEqual(t, len(m.ErrMessage), maxErrMessage+3)
	assert.True(t, strings.HasSuffix(m.ErrMessage, "é..."))
	assert.Equal(t, "abc", truncate("abc", 3))
}
