package childproc_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/internal/proctest"
)

// Upper bounds only: these machines are noisy.
const (
	waitLong = 30 * time.Second
	waitGone = 10 * time.Second
	waitPoll = 10 * time.Millisecond
)

// clean makes the test fail if it leaves a goroutine, a child process, a
// zombie or an open file descriptor behind.
func clean(t *testing.T) {
	t.Helper()
	fds := proctest.CheckFDs(t)
	t.Cleanup(func() {
		fds()
		proctest.VerifyNone(t)
		require.Empty(t, proctest.Zombies(), "zombies")
	})
}

// selfSpec runs the test binary in a mode of runMode.
func selfSpec(t *testing.T, mode string, args ...string) childproc.Spec {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	return childproc.Spec{
		Path: self,
		Args: args,
		Env:  []string{modeEnv + "=" + mode},
		Name: mode,
	}
}

// start starts spec and makes sure the process is gone at the end of the
// test, whatever happens.
func start(t *testing.T, spec childproc.Spec) *childproc.Process {
	t.Helper()
	p, err := childproc.Start(spec)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		p.Stop(ctx, 0)
	})
	return p
}

// lineReader reads lines from the process's Output with a generous
// deadline per line.
type lineReader struct {
	t *testing.T
	p *childproc.Process
	r *bufio.Reader
}

func newLineReader(t *testing.T, p *childproc.Process) *lineReader {
	return &lineReader{t: t, p: p, r: bufio.NewReader(p.Output())}
}

func (l *lineReader) next() string {
	l.t.Helper()
	require.NoError(l.t, l.p.Output().SetReadDeadline(time.Now().Add(waitLong)))
	line, err := l.r.ReadString('\n')
	require.NoError(l.t, err, "reading a line from the worker (stderr: %q)", l.p.StderrTail())
	return strings.TrimSuffix(line, "\n")
}

// waitLogged waits until every line the process wrote has been logged or
// dropped: the logging goes on after Done.
func waitLogged(t *testing.T, p *childproc.Process) {
	t.Helper()
	select {
	case <-p.OutputLogged():
	case <-time.After(waitLong):
		t.Fatalf("the output of process %d was not logged", p.PID())
	}
}

// waitDone waits for the process to end by itself.
func waitDone(t *testing.T, p *childproc.Process) childproc.ExitInfo {
	t.Helper()
	select {
	case <-p.Done():
		return p.Exit()
	case <-time.After(waitLong):
		t.Fatalf("process %d did not end", p.PID())
		return childproc.ExitInfo{}
	}
}

// capture is an hclog sink whose records can be read back.
type capture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capture) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(b)
}

func (c *capture) records(t *testing.T) []map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(c.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "log line %q", sc.Text())
		out = append(out, rec)
	}
	require.NoError(t, sc.Err())
	return out
}

func newCapture() (hclog.Logger, *capture) {
	c := &capture{}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "test",
		Output:     c,
		JSONFormat: true,
		Level:      hclog.Trace,
	}), c
}

// streamRecords returns the messages logged from stream ("stdout" or
// "stderr"), checking that each carries the pid and name fields.
func streamRecords(t *testing.T, recs []map[string]any, stream string, pid int, name string) []string {
	t.Helper()
	var msgs []string
	for _, r := range recs {
		if r["stream"] != stream || r["dropped"] != nil {
			continue
		}
		require.EqualValues(t, pid, r["pid"], "pid field of %v", r)
		require.Equal(t, name, r["name"], "name field of %v", r)
		msgs = append(msgs, r["@message"].(string))
	}
	return msgs
}

func deadline() time.Time { return time.Now().Add(waitLong) }

func readAll(f *os.File) (string, error) {
	b, err := io.ReadAll(f)
	return string(b), err
}

// droppedLines adds up the lines the reader of stream reported dropped.
func droppedLines(recs []map[string]any, stream string) int {
	n := 0
	for _, r := range recs {
		if d, ok := r["dropped"].(float64); ok && r["stream"] == stream {
			n += int(d)
		}
	}
	return n
}

// readOutput reads p's fd 4 to its end: io.EOF, or os.ErrClosed once the
// Process has closed the emptied pipe after the exit (see Output).
func readOutput(p *childproc.Process) ([]byte, error) {
	b, err := io.ReadAll(p.Output())
	if errors.Is(err, os.ErrClosed) {
		err = nil
	}
	return b, err
}
