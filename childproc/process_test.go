package childproc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/internal/proctest"
)

func TestEchoWhileSpamming(t *testing.T) {
	clean(t)
	log, logs := newCapture()
	const lines = 20000
	spec := selfSpec(t, "spam", strconv.Itoa(lines))
	spec.Logger = log
	spec.Name = "spammer"
	p := start(t, spec)

	payload := make([]byte, 4<<20)
	_, _ = rand.Read(payload)
	writeErr := make(chan error, 1)
	go func() {
		_, err := p.Input().Write(payload)
		if err == nil {
			err = p.Input().Close()
		}
		writeErr <- err
	}()
	require.NoError(t, p.Output().SetReadDeadline(time.Now().Add(waitLong)))
	got, err := readOutput(p)
	require.NoError(t, err)
	require.NoError(t, <-writeErr)
	require.True(t, bytes.Equal(payload, got), "the protocol pipes corrupted the bytes (%d in, %d out)", len(payload), len(got))

	exit := waitDone(t, p)
	require.True(t, exit.Success(), "exit: %v, stderr tail %q", exit, exit.StderrTail)
	assert.False(t, exit.Requested)

	// Every line reaches the logger, in order, unless the logger falls
	// behind (as it may under -race): then the reader drops lines rather
	// than block the child, and says how many.
	waitLogged(t, p)
	recs := logs.records(t)
	for _, stream := range []string{"stdout", "stderr"} {
		msgs := streamRecords(t, recs, stream, p.PID(), "spammer")
		dropped := droppedLines(recs, stream)
		assert.Equal(t, lines, len(msgs)+dropped, "%s: %d logged, %d dropped", stream, len(msgs), dropped)
		prefix := map[string]string{"stdout": "out", "stderr": "err"}[stream]
		last := -1
		for _, m := range msgs {
			var n int
			_, err := fmt.Sscanf(m, prefix+" %d", &n)
			require.NoError(t, err, "line %q", m)
			require.Greater(t, n, last, "lines out of order")
			last = n
		}
		if dropped == 0 {
			assert.Equal(t, lines-1, last)
		}
	}
	for _, r := range recs {
		if r["dropped"] != nil {
			continue
		}
		switch r["stream"] {
		case "stdout":
			assert.Equal(t, "info", r["@level"])
		case "stderr":
			assert.Equal(t, "warn", r["@level"])
		}
	}
	assert.Equal(t, fmt.Sprintf("err %d", lines-1), exit.StderrTail[len(exit.StderrTail)-1])
	assert.Len(t, exit.StderrTail, childproc.DefaultStderrTail)
}

func TestLogLevelsConfigurable(t *testing.T) {
	clean(t)
	log, logs := newCapture()
	spec := selfSpec(t, "spam", "3")
	spec.Logger = log
	spec.StdoutLevel = hclog.Debug
	spec.StderrLevel = hclog.Error
	p := start(t, spec)
	require.NoError(t, p.Input().Close())
	require.True(t, waitDone(t, p).Success())
	waitLogged(t, p)
	levels := map[string]string{}
	for _, r := range logs.records(t) {
		if s, ok := r["stream"].(string); ok {
			levels[s] = r["@level"].(string)
		}
	}
	assert.Equal(t, map[string]string{"stdout": "debug", "stderr": "error"}, levels)
}

func TestLongLinesDoNotStopTheReader(t *testing.T) {
	clean(t)
	log, logs := newCapture()
	const long = 200 << 10
	spec := selfSpec(t, "longline", strconv.Itoa(long))
	spec.Logger = log
	p := start(t, spec)
	_, err := p.Input().Write([]byte("ping\n"))
	require.NoError(t, err)
	require.Equal(t, "ping", newLineReader(t, p).next())
	exit := p.Stop(context.Background(), waitLong)
	require.True(t, exit.Success(), "exit %v", exit)

	waitLogged(t, p)
	msgs := streamRecords(t, logs.records(t), "stderr", p.PID(), "longline")
	require.NotEmpty(t, msgs)
	assert.Equal(t, "after-long", msgs[len(msgs)-1])
	total := 0
	for _, m := range msgs[:len(msgs)-1] {
		assert.LessOrEqual(t, len(m), childproc.MaxLineLength)
		total += len(m)
	}
	assert.Equal(t, long, total, "the long line arrives whole, in pieces")
	assert.Equal(t, "after-long", exit.StderrTail[len(exit.StderrTail)-1])
}

func TestExitCode(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "exit", "3"))
	exit := waitDone(t, p)
	assert.Equal(t, 3, exit.Code)
	assert.Zero(t, exit.Signal)
	assert.False(t, exit.Requested)
	assert.NoError(t, exit.Err)
	assert.Equal(t, p.PID(), exit.PID)
	assert.Equal(t, "exit 3", exit.String())
	assert.False(t, exit.Success())
	assert.Equal(t, exit, p.Stop(context.Background(), time.Second), "Stop after the end returns the same")
}

func TestRSS(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "alloc", "64"))
	lines := newLineReader(t, p)
	require.Equal(t, "ready", lines.next())
	before, err := p.RSS()
	require.NoError(t, err)
	require.NotZero(t, before)
	_, err = p.Input().Write([]byte{1})
	require.NoError(t, err)
	require.Equal(t, "done", lines.next())
	after, err := p.RSS()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, after, before+32<<20, "RSS %d -> %d", before, after)
	exit := p.Stop(context.Background(), waitLong)
	assert.True(t, exit.Success(), "exit %v", exit)
	assert.GreaterOrEqual(t, exit.MaxRSS, uint64(64<<20))
}

func TestStderrTail(t *testing.T) {
	for _, c := range []struct {
		tail, want int
	}{{5, 5}, {0, childproc.DefaultStderrTail}, {500, 100}} {
		t.Run(strconv.Itoa(c.tail), func(t *testing.T) {
			clean(t)
			spec := selfSpec(t, "stderrlines", "100")
			spec.StderrTail = c.tail
			p := start(t, spec)
			exit := waitDone(t, p)
			assert.Equal(t, 1, exit.Code)
			want := make([]string, 0, c.want)
			for i := 100 - c.want; i < 100; i++ {
				want = append(want, fmt.Sprintf("line %d", i))
			}
			assert.Equal(t, want, exit.StderrTail)
			assert.Equal(t, want, p.StderrTail())
		})
	}
}

func TestUsageOfABusyChild(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "burn"))
	exit := waitDone(t, p)
	require.True(t, exit.Success(), "exit %v", exit)
	assert.Greater(t, exit.UserTime+exit.SystemTime, 50*time.Millisecond)
	assert.Greater(t, exit.MaxRSS, uint64(16<<20))
}

func TestExitInfoString(t *testing.T) {
	for _, c := range []struct {
		e    childproc.ExitInfo
		want string
	}{
		{childproc.ExitInfo{Code: 0}, "exit 0"},
		{childproc.ExitInfo{Code: 3}, "exit 3"},
		{childproc.ExitInfo{Code: -1, Signal: syscall.SIGKILL}, "killed by SIGKILL"},
		{childproc.ExitInfo{Code: -1, Signal: syscall.SIGSEGV, CoreDumped: true}, "killed by SIGSEGV (core dumped)"},
		{childproc.ExitInfo{Code: -1, Err: syscall.ECHILD}, "wait error: no child processes"},
	} {
		assert.Equal(t, c.want, c.e.String())
	}
}

// gate is a log sink that blocks every record of the child's output until
// it is opened.
type gate struct {
	open chan struct{}
	c    capture
}

func (g *gate) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte(`"stream"`)) {
		<-g.open
	}
	return g.c.Write(b)
}

func TestSlowLoggerDoesNotBlockTheChild(t *testing.T) {
	clean(t)
	g := &gate{open: make(chan struct{})}
	opened := false
	defer func() {
		if !opened {
			close(g.open)
		}
	}()
	const lines = 20000 // of 100 bytes: more than the reader queues
	spec := selfSpec(t, "spam", strconv.Itoa(lines), "100")
	spec.Logger = hclog.New(&hclog.LoggerOptions{Output: g, JSONFormat: true, Level: hclog.Trace})
	p := start(t, spec)
	_, err := p.Input().Write([]byte("ping\n"))
	require.NoError(t, err)
	require.Equal(t, "ping", newLineReader(t, p).next())
	require.NoError(t, p.Input().Close())
	// The child writes all its lines and exits although nothing is logged.
	require.True(t, proctest.WaitFor(waitLong, func() bool {
		_, err := p.RSS()
		return err != nil
	}), "the child is blocked by the logger")
	close(g.open)
	opened = true
	exit := waitDone(t, p)
	require.True(t, exit.Success(), "exit %v", exit)
	waitLogged(t, p)

	recs := g.c.records(t)
	for _, stream := range []string{"stdout", "stderr"} {
		msgs := streamRecords(t, recs, stream, p.PID(), "spam")
		dropped := droppedLines(recs, stream)
		assert.Positive(t, dropped, stream)
		assert.Equal(t, lines, len(msgs)+dropped, stream)
	}
}
