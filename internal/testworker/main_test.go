package main

import (
	"bytes"
	"crypto/sha512"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// child is a running testworker wired by hand: its fd 3 reads what the test
// writes with w, and what it writes on fd 4 the test reads with r.
type child struct {
	t      testing.TB
	cmd    *exec.Cmd
	w      *codec.Writer
	r      *codec.Reader
	toW    *os.File
	fromW  *os.File
	stderr bytes.Buffer
	ready  codec.Message
	waited chan struct{}
}

func startChild(t testing.TB, env ...string) *child {
	t.Helper()
	childIn, toW, err := os.Pipe()
	require.NoError(t, err)
	fromW, childOut, err := os.Pipe()
	require.NoError(t, err)
	c := &child{t: t, toW: toW, fromW: fromW, waited: make(chan struct{})}
	c.cmd = exec.Command(testbin.Path(t))
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.ExtraFiles = []*os.File{childIn, childOut} // fds 3 and 4
	c.cmd.Stderr = &c.stderr
	require.NoError(t, c.cmd.Start())
	childIn.Close()
	childOut.Close()
	c.w = codec.NewWriter(toW, 0)
	c.r = codec.NewReader(fromW, 0)
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		c.wait()
		toW.Close()
		fromW.Close()
	})
	return c
}

func (c *child) handshake() {
	c.t.Helper()
	c.send(&codec.Message{Kind: codec.KindHello, Version: codec.Version})
	c.ready = c.next()
	require.Equal(c.t, codec.KindReady, c.ready.Kind)
}

func (c *child) send(m *codec.Message) {
	c.t.Helper()
	require.NoError(c.t, c.w.Write(m))
}

func (c *child) next() codec.Message {
	c.t.Helper()
	var m codec.Message
	require.NoError(c.t, c.r.Read(&m))
	m.Payload = bytes.Clone(m.Payload)
	return m
}

func (c *child) call(id uint64, jobType string, payload []byte) codec.Message {
	c.t.Helper()
	c.send(&codec.Message{Kind: codec.KindRequest, ID: id, JobType: jobType, Payload: payload})
	m := c.next()
	require.Equal(c.t, codec.KindResponse, m.Kind)
	require.Equal(c.t, id, m.ID)
	return m
}

// wait waits for the child's exit and returns its exit code (-1 when
// killed by a signal).
func (c *child) wait() int {
	select {
	case <-c.waited:
	default:
		c.cmd.Wait()
		close(c.waited)
	}
	return c.cmd.ProcessState.ExitCode()
}

func TestEndToEnd(t *testing.T) {
	c := startChild(t)
	c.handshake()
	assert.Equal(t, c.cmd.Process.Pid, c.ready.PID)
	for _, jt := range []string{"echo", "sha512", "sha512v", "noop", "sleep", "sleep_ignore_cancel", "exit",
		"panic", "spam", "garbage", "alloc", "grandchild", "pid", "gomaxprocs", "env", "selfinfo", "hang_all"} {
		assert.Contains(t, c.ready.JobTypes, jt)
	}

	m := c.call(1, "echo", []byte("hello"))
	assert.Equal(t, "hello", string(m.Payload))

	data := bytes.Repeat([]byte("abc"), 1000)
	m = c.call(2, "sha512", data)
	want := sha512.Sum512(data)
	assert.Equal(t, want[:], m.Payload)

	in, err := msgpack.Marshal(sha512Value{Size: 1024, Seed: 7})
	require.NoError(t, err)
	c.send(&codec.Message{Kind: codec.KindRequest, ID: 3, JobType: "sha512v", PayloadKind: codec.Value, Payload: in})
	m = c.next()
	require.Empty(t, m.ErrCode, m.ErrMessage)
	var digest []byte
	require.NoError(t, msgpack.Unmarshal(m.Payload, &digest))
	buf := make([]byte, 1024)
	for i := range buf {
		buf[i] = 7 + byte(i)
	}
	want = sha512.Sum512(buf)
	assert.Equal(t, want[:], digest)

	m = c.call(4, "pid", nil)
	assert.Equal(t, strconv.Itoa(c.cmd.Process.Pid), string(m.Payload))

	m = c.call(5, "selfinfo", nil)
	assert.Contains(t, string(m.Payload), "--- threads\ntid=")

	m = c.call(6, "sleep", []byte("x"))
	assert.Equal(t, codec.CodeBadPayload, m.ErrCode)

	c.send(&codec.Message{Kind: codec.KindRequest, ID: 7, JobType: "sleep", Payload: []byte("10000")})
	c.send(&codec.Message{Kind: codec.KindCancel, ID: 7})
	m = c.next()
	assert.Equal(t, codec.CodeCancelled, m.ErrCode)

	c.send(&codec.Message{Kind: codec.KindShutdown, Grace: time.Second})
	assert.Equal(t, 0, c.wait())
}

func TestEnvAndHostEOF(t *testing.T) {
	c := startChild(t, "TESTWORKER_PROBE=42")
	c.handshake()
	m := c.call(1, "env", nil)
	assert.Contains(t, strings.Split(string(m.Payload), "\n"), "TESTWORKER_PROBE=42")
	c.send(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "sleep", Payload: []byte("60000")})
	c.toW.Close()
	assert.Equal(t, 0, c.wait())
}

func TestPanicExitCode(t *testing.T) {
	c := startChild(t)
	c.handshake()
	m := c.call(1, "panic", []byte("on purpose"))
	assert.Equal(t, codec.CodePanic, m.ErrCode)
	assert.Contains(t, m.ErrMessage, "testworker: on purpose")
	assert.Equal(t, 70, c.wait())
	assert.Contains(t, c.stderr.String(), "goroutine")
}

func TestExitJob(t *testing.T) {
	c := startChild(t)
	c.handshake()
	c.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "exit", Payload: []byte("9")})
	assert.Equal(t, 9, c.wait())
}

func TestExitAtStart(t *testing.T) {
	c := startChild(t, "TESTWORKER_EXIT_AT_START=5")
	assert.Equal(t, 5, c.wait())

	flag := t.TempDir() + "/crash"
	require.NoError(t, os.WriteFile(flag, nil, 0o600))
	c = startChild(t, "TESTWORKER_EXIT_AT_START_FILE="+flag)
	assert.Equal(t, 3, c.wait())
	require.NoError(t, os.Remove(flag))
	c = startChild(t, "TESTWORKER_EXIT_AT_START_FILE="+flag)
	c.handshake()
}

func TestNoProtocolPipes(t *testing.T) {
	cmd := exec.Command(testbin.Path(t))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, string(out), "fds 3 and 4")
}

func TestGarbage(t *testing.T) {
	c := startChild(t)
	c.handshake()
	c.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "garbage"})
	var m codec.Message
	assert.ErrorIs(t, c.r.Read(&m), codec.ErrMalformed)
}

func TestNoPong(t *testing.T) {
	c := startChild(t, "TESTWORKER_NO_PONG=1")
	c.handshake()
	c.send(&codec.Message{Kind: codec.KindPing, ID: 1})
	m := c.call(2, "echo", []byte("still working"))
	assert.Equal(t, "still working", string(m.Payload))
	c.send(&codec.Message{Kind: codec.KindShutdown})
	assert.Equal(t, 0, c.wait())
}

// The grandchild must not inherit the protocol pipes: once the worker is
// gone, the host reads end of file even though the grandchild lives on.
func TestGrandchildDoesNotHoldPipes(t *testing.T) {
	c := startChild(t)
	c.handshake()
	m := c.call(1, "grandchild", nil)
	pid, err := strconv.Atoi(string(m.Payload))
	require.NoError(t, err)
	defer syscall.Kill(pid, syscall.SIGKILL)
	require.NoError(t, syscall.Kill(pid, 0), "the grandchild should be alive")

	c.send(&codec.Message{Kind: codec.KindShutdown})
	assert.Equal(t, 0, c.wait())
	done := make(chan error, 1)
	go func() {
		var m codec.Message
		done <- c.r.Read(&m)
	}()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, io.EOF)
	case <-time.After(5 * time.Second):
		t.Fatal("the protocol pipe stays open after the worker's exit")
	}
}

func TestHangAll(t *testing.T) {
	c := startChild(t)
	c.handshake()
	c.send(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "hang_all"})
	require.Eventually(t, func() bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/stat")
		return err == nil && strings.Contains(string(stat), ") T ")
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, c.cmd.Process.Kill())
	assert.Equal(t, -1, c.wait())
}
