package codec_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
)

// The tests in this file hold docs/protocol.md to the code: its example
// frames, its tables and its Python worker.

func protocolDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	require.NoError(t, err, "docs/protocol.md is the specification this package implements")
	return string(b)
}

func TestProtocolDocHexDumps(t *testing.T) {
	doc := protocolDoc(t)
	for _, ex := range protocolExamples() {
		var buf bytes.Buffer
		require.NoError(t, codec.NewWriter(&buf, 0).Write(&ex.Msg))
		dump := "```\n" + hex.Dump(buf.Bytes()) + "```"
		assert.Contains(t, doc, dump, "the %s frame in docs/protocol.md", ex.Name)
	}
}

func TestProtocolDocTables(t *testing.T) {
	doc := protocolDoc(t)
	for k := codec.KindHello; k <= codec.KindCredit; k++ {
		assert.Contains(t, doc, fmt.Sprintf("| %d | %s |", k, k), "kind %d in the message table", k)
		assert.Contains(t, doc, fmt.Sprintf("### 4.%d %s (%d)", k, k, k), "a section for kind %d", k)
	}
	for _, c := range []string{codec.CodeHandler, codec.CodePanic, codec.CodeCancelled, codec.CodeDeadline,
		codec.CodeUnknownJobType, codec.CodeBadPayload, codec.CodeTooLarge, codec.CodeShuttingDown} {
		assert.Contains(t, doc, "| `"+c+"` |", "error code %q in the table", c)
	}
	for _, f := range []codec.Features{codec.FeatureMeta, codec.FeatureBatch, codec.FeatureStream} {
		assert.Contains(t, doc, fmt.Sprintf("### 14.%d The %q feature", bits.TrailingZeros32(uint32(f))+2, f.String()), "a section for feature %s", f)
	}
	assert.Contains(t, doc, fmt.Sprintf("at most %d items", codec.MaxBatch))
	assert.Contains(t, doc, fmt.Sprintf("`%d`", codec.DefaultMaxFrame))
	assert.Contains(t, doc, "version 1")
	assert.Equal(t, 1, codec.Version)
}

// pythonWithMsgpack returns a python3 that can import msgpack, or "".
func pythonWithMsgpack() string {
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, p := range candidates {
		if exec.Command(p, "-c", "import msgpack").Run() == nil {
			return p
		}
	}
	return ""
}

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pythonWorker is the worker of docs/protocol.md §11, started with its pipes.
type pythonWorker struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	w      *codec.Writer
	toW    *os.File // the host's end of fd 3
	fromW  *os.File // the host's end of fd 4
	frames chan any // codec.Message or the Reader's final error
}

func startPythonWorker(t *testing.T, ctx context.Context, python, script string) *pythonWorker {
	t.Helper()
	hwR, hwW, err := os.Pipe()
	require.NoError(t, err)
	whR, whW, err := os.Pipe()
	require.NoError(t, err)
	pw := &pythonWorker{toW: hwW, fromW: whR, frames: make(chan any, 64)}
	pw.cmd = exec.CommandContext(ctx, python, script)
	pw.cmd.ExtraFiles = []*os.File{hwR, whW} // fd 3 and fd 4
	pw.cmd.Stderr = &pw.stderr
	pw.cmd.WaitDelay = 5 * time.Second
	require.NoError(t, pw.cmd.Start())
	require.NoError(t, hwR.Close())
	require.NoError(t, whW.Close())
	pw.w = codec.NewWriter(hwW, 0)
	go func() {
		r := codec.NewReader(whR, 0)
		for {
			var m codec.Message
			if err := r.Read(&m); err != nil {
				pw.frames <- err
				close(pw.frames)
				return
			}
			m.Payload = append([]byte(nil), m.Payload...)
			pw.frames <- m
		}
	}()
	t.Cleanup(func() {
		_ = pw.toW.Close()
		_ = pw.cmd.Process.Kill()
		_ = pw.cmd.Wait()
		_ = pw.fromW.Close()
		for range pw.frames { // let the reading goroutine end
		}
		if t.Failed() {
			t.Logf("worker stderr:\n%s", pw.stderr.String())
		}
	})
	return pw
}

func (pw *pythonWorker) send(t *testing.T, m codec.Message) {
	t.Helper()
	require.NoError(t, pw.w.Write(&m))
}

func (pw *pythonWorker) next(t *testing.T) codec.Message {
	t.Helper()
	select {
	case f := <-pw.frames:
		m, ok := f.(codec.Message)
		require.True(t, ok, "reading the worker: %v\nstderr: %s", f, pw.stderr.String())
		return m
	case <-time.After(20 * time.Second):
		t.Fatalf("no frame from the worker; stderr: %s", pw.stderr.String())
	}
	return codec.Message{}
}

func (pw *pythonWorker) handshake(t *testing.T, hostMaxFrame uint32) codec.Message {
	t.Helper()
	pw.send(t, codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: hostMaxFrame})
	ready := pw.next(t)
	require.Equal(t, codec.KindReady, ready.Kind)
	require.Equal(t, uint32(codec.Version), ready.Version)
	require.Equal(t, pw.cmd.Process.Pid, ready.PID)
	require.Equal(t, []string{"echo"}, ready.JobTypes)
	require.Positive(t, ready.MaxFrame)
	pw.w.SetMaxFrame(int(ready.MaxFrame))
	return ready
}

// waitExit waits for the worker's fd 4 to end cleanly and for its exit.
func (pw *pythonWorker) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case f := <-pw.frames:
		require.ErrorIs(t, f.(error), io.EOF, "fd 4 ends cleanly, between frames")
	case <-time.After(20 * time.Second):
		t.Fatalf("the worker did not exit; stderr: %s", pw.stderr.String())
	}
	err := pw.cmd.Wait()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode()
	}
	require.NoError(t, err)
	return 0
}

func pythonScript(t *testing.T) string {
	doc := protocolDoc(t)
	_, after, ok := strings.Cut(doc, "## 11. A complete minimal worker in Python")
	require.True(t, ok)
	_, code, ok := strings.Cut(after, "```python\n")
	require.True(t, ok)
	code, _, ok = strings.Cut(code, "\n```\n")
	require.True(t, ok)
	path := filepath.Join(t.TempDir(), "worker.py")
	require.NoError(t, os.WriteFile(path, []byte(code+"\n"), 0o644))
	return path
}

func TestProtocolDocPythonWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	python := pythonWithMsgpack()
	if python == "" {
		t.Skip("no python3 with msgpack (pip install msgpack, or apt install python3-msgpack)")
	}
	script := pythonScript(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("jobs, ping, cancel, shutdown", func(t *testing.T) {
		pw := startPythonWorker(t, ctx, python, script)
		const hostMax = 4096
		pw.handshake(t, hostMax)

		value, err := msgpack.Marshal(map[string]any{"a": 1})
		require.NoError(t, err)
		pw.send(t, codec.Message{Kind: codec.KindPing, ID: 1})
		pw.send(t, codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "echo", Timeout: 5 * time.Second, PayloadKind: codec.Blob, Payload: []byte("hello")})
		pw.send(t, codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "echo", PayloadKind: codec.Blob})
		pw.send(t, codec.Message{Kind: codec.KindRequest, ID: 3, JobType: "nope", PayloadKind: codec.Blob, Payload: []byte("x")})
		pw.send(t, codec.Message{Kind: codec.KindRequest, ID: 4, JobType: "echo", PayloadKind: codec.Value, Payload: value})
		pw.send(t, codec.Message{Kind: codec.KindRequest, ID: 5, JobType: "echo", PayloadKind: codec.Blob, Payload: make([]byte, hostMax+100)})
		pw.send(t, codec.Message{Kind: codec.KindCancel, ID: 99}) // unknown: ignored
		pw.send(t, codec.Message{Kind: codec.KindPing, ID: 2})

		responses := map[uint64]codec.Message{}
		var pongs []uint64
		for len(responses) < 5 || len(pongs) < 2 {
			m := pw.next(t)
			switch m.Kind {
			case codec.KindResponse:
				_, dup := responses[m.ID]
				require.False(t, dup, "a second response for %d", m.ID)
				responses[m.ID] = m
			case codec.KindPong:
				pongs = append(pongs, m.ID)
			default:
				t.Fatalf("unexpected %s from the worker", m.Kind)
			}
		}
		assert.Equal(t, []uint64{1, 2}, pongs)
		assert.Equal(t, "", responses[1].ErrCode)
		assert.Equal(t, []byte("hello"), responses[1].Payload)
		assert.Equal(t, codec.Blob, responses[1].PayloadKind)
		assert.Equal(t, "", responses[2].ErrCode)
		assert.Empty(t, responses[2].Payload)
		assert.Equal(t, codec.CodeUnknownJobType, responses[3].ErrCode)
		assert.Equal(t, codec.CodeBadPayload, responses[4].ErrCode)
		assert.Equal(t, codec.CodeTooLarge, responses[5].ErrCode)
		assert.NotEmpty(t, responses[5].ErrMessage)

		pw.send(t, codec.Message{Kind: codec.KindShutdown, Grace: 2 * time.Second})
		assert.Equal(t, 0, pw.waitExit(t), "exit status after shutdown")
	})

	// A worker that reads only hello's first elements, as this one does,
	// takes a hello offering features as an old one: its ready names none,
	// and the host uses none.
	t.Run("a hello offering features", func(t *testing.T) {
		pw := startPythonWorker(t, ctx, python, script)
		pw.send(t, codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame, Features: codec.AllFeatures})
		ready := pw.next(t)
		require.Equal(t, codec.KindReady, ready.Kind)
		assert.Zero(t, ready.Features)
		assert.Zero(t, ready.SharedSize)
		pw.send(t, codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "echo", PayloadKind: codec.Blob, Payload: []byte("old")})
		assert.Equal(t, "old", string(pw.next(t).Payload))
		require.NoError(t, pw.toW.Close())
		assert.Equal(t, 0, pw.waitExit(t))
	})

	t.Run("end of stream on fd 3", func(t *testing.T) {
		pw := startPythonWorker(t, ctx, python, script)
		pw.handshake(t, codec.DefaultMaxFrame)
		pw.send(t, codec.Message{Kind: codec.KindPing, ID: 9})
		assert.Equal(t, codec.Message{Kind: codec.KindPong, ID: 9}, pw.next(t))
		start := time.Now()
		require.NoError(t, pw.toW.Close())
		assert.Equal(t, 0, pw.waitExit(t))
		assert.Less(t, time.Since(start), 10*time.Second)
	})
}
