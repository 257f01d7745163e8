package childproc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/sandbox"
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

func TestKill(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "sleep"))
	require.Equal(t, "ready", newLineReader(t, p).next())
	require.NoError(t, p.Kill())
	exit := waitDone(t, p)
	assert.Equal(t, syscall.SIGKILL, exit.Signal)
	assert.Equal(t, -1, exit.Code)
	assert.False(t, exit.Requested)
	assert.Equal(t, "killed by SIGKILL", exit.String())
	assert.ErrorIs(t, p.Kill(), os.ErrProcessDone)
	assert.ErrorIs(t, p.Signal(syscall.SIGTERM), os.ErrProcessDone)
	_, err := p.RSS()
	assert.ErrorIs(t, err, os.ErrProcessDone)
	_, err = p.Memory()
	assert.ErrorIs(t, err, os.ErrProcessDone)
}

func TestSignal(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "sleep"))
	require.Equal(t, "ready", newLineReader(t, p).next())
	require.NoError(t, p.Signal(syscall.SIGTERM))
	exit := waitDone(t, p)
	assert.Equal(t, syscall.SIGTERM, exit.Signal)
	assert.Equal(t, "killed by SIGTERM", exit.String())
}

func TestSelfKillSIGSEGV(t *testing.T) {
	clean(t)
	noCore := uint64(0)
	p := start(t, childproc.Spec{
		Path:   "/bin/sh",
		Args:   []string{"-c", "echo about to crash >&2; kill -SEGV $$"},
		Limits: childproc.Limits{CoreSize: &noCore},
	})
	exit := waitDone(t, p)
	assert.Equal(t, syscall.SIGSEGV, exit.Signal)
	assert.Equal(t, -1, exit.Code)
	assert.False(t, exit.CoreDumped)
	assert.Equal(t, "killed by SIGSEGV", exit.String())
	assert.Equal(t, []string{"about to crash"}, exit.StderrTail)
}

func TestStopIsGracefulFirst(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "echo"))
	_, err := p.Input().Write([]byte("hello\n"))
	require.NoError(t, err)
	require.Equal(t, "hello", newLineReader(t, p).next())
	began := time.Now()
	exit := p.Stop(context.Background(), waitLong)
	// A Go child killed by SIGTERM would report the signal: code 0 means
	// it left on its own, at the EOF on fd 3.
	assert.Equal(t, 0, exit.Code)
	assert.Zero(t, exit.Signal)
	assert.True(t, exit.Requested)
	assert.Less(t, time.Since(began), waitLong)
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
}

func TestStopEscalatesToSIGTERM(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "sleep")) // does not read fd 3, dies of SIGTERM
	require.Equal(t, "ready", newLineReader(t, p).next())
	exit := p.Stop(context.Background(), 200*time.Millisecond)
	assert.Equal(t, syscall.SIGTERM, exit.Signal)
	assert.True(t, exit.Requested)
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "stubborn")) // ignores EOF and SIGTERM
	require.Equal(t, "ready", newLineReader(t, p).next())
	const grace = 300 * time.Millisecond
	began := time.Now()
	exit := p.Stop(context.Background(), grace)
	took := time.Since(began)
	assert.Equal(t, syscall.SIGKILL, exit.Signal)
	assert.True(t, exit.Requested)
	assert.GreaterOrEqual(t, took, grace+grace/2, "the graces are waited")
	assert.Less(t, took, grace+grace/2+waitGone)
}

func TestStopContextEndCutsGraceShort(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "stubborn"))
	require.Equal(t, "ready", newLineReader(t, p).next())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	exit := p.Stop(ctx, time.Hour)
	assert.Less(t, time.Since(began), waitLong)
	assert.Equal(t, syscall.SIGKILL, exit.Signal)
	assert.True(t, exit.Requested)
}

func TestStopKillsGrandchild(t *testing.T) {
	for _, mode := range []string{"echo", "exit"} {
		t.Run(mode, func(t *testing.T) {
			clean(t)
			tag := newTag(t)
			p := start(t, selfSpec(t, "grandchild", mode, tag))
			require.Equal(t, "started", newLineReader(t, p).next())
			if mode == "echo" { // alive while the worker is
				gc := others(requireTagged(t, tag, 2), p.PID())[0] // the worker carries the tag too
				info, err := proctest.ReadProc(gc)
				require.NoError(t, err)
				require.Equal(t, p.PID(), info.PGID, "the grandchild is in the worker's group")
			}

			var exit childproc.ExitInfo
			if mode == "echo" { // stopped: leaves at EOF, the group is killed
				exit = p.Stop(context.Background(), waitLong)
				assert.True(t, exit.Requested)
			} else { // exits by itself, leaving the grandchild behind
				exit = waitDone(t, p)
				assert.False(t, exit.Requested)
			}
			assert.True(t, exit.Success(), "exit %v", exit)
			requireGone(t, tag, "the grandchild")
			assert.False(t, proctest.ProcessGroupAlive(p.PID()))
		})
	}
}

// TestEscapedGrandchildDoesNotBlockDone: a grandchild that left the
// worker's process group and holds stdout, stderr and fd 4 neither
// survives the worker nor delays Done.
func TestEscapedGrandchildDoesNotBlockDone(t *testing.T) {
	clean(t)
	tag := newTag(t)
	p := start(t, selfSpec(t, "grandchild", "escape", tag))
	require.Equal(t, "started", newLineReader(t, p).next())
	exit := waitDone(t, p)
	assert.True(t, exit.Success(), "exit %v", exit)
	assert.Empty(t, tagged(tag), "the escaped grandchild is gone when Done closes")
}

func TestHostDeathKillsWorker(t *testing.T) {
	for _, mode := range []string{"plain", "controls"} {
		t.Run(mode, func(t *testing.T) {
			clean(t)
			tag := newTag(t)
			host := start(t, selfSpec(t, "host", mode, tag))
			require.Equal(t, "started", newLineReader(t, host).next(), "host stderr: %q", host.StderrTail())
			worker := others(requireTagged(t, tag, 2), host.PID())[0] // the host carries the tag too
			// The host started it from a thread that has exited since:
			// it must still be alive.
			time.Sleep(200 * time.Millisecond)
			require.True(t, proctest.Alive(worker), "worker died with the forking thread")
			info, err := proctest.ReadProc(worker)
			require.NoError(t, err)
			require.Equal(t, host.PID(), info.PPID)

			require.NoError(t, host.Kill())
			exit := waitDone(t, host)
			require.Equal(t, syscall.SIGKILL, exit.Signal)
			requireGone(t, tag, "the worker after its host")
		})
	}
}

func TestEnvironmentIsClean(t *testing.T) {
	clean(t)
	t.Setenv("CHILDPROC_INHERITED", "yes")
	t.Setenv("CHILDPROC_NOT_INHERITED", "no")
	t.Setenv("CHILDPROC_OVERRIDDEN", "parent")
	spec := selfSpec(t, "env")
	spec.Env = append(spec.Env, "A=1", "B=two words", "EMPTY=", "CHILDPROC_OVERRIDDEN=spec")
	spec.InheritEnv = []string{"CHILDPROC_INHERITED", "CHILDPROC_UNSET", "CHILDPROC_OVERRIDDEN", "CHILDPROC_INHERITED"}
	p := start(t, spec)
	require.NoError(t, p.Output().SetReadDeadline(time.Now().Add(waitLong)))
	out, err := readOutput(p)
	require.NoError(t, err)
	require.True(t, waitDone(t, p).Success())
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	assert.ElementsMatch(t, []string{
		modeEnv + "=env", "A=1", "B=two words", "EMPTY=", "CHILDPROC_OVERRIDDEN=spec", "CHILDPROC_INHERITED=yes",
	}, got)
}

func TestInvalidSpecsAreRefused(t *testing.T) {
	clean(t)
	self, err := os.Executable()
	require.NoError(t, err)
	nice := func(n int) *int { return &n }
	closed, err := os.CreateTemp(t.TempDir(), "closed")
	require.NoError(t, err)
	require.NoError(t, closed.Close())
	cases := []struct {
		name string
		spec childproc.Spec
		want string
	}{
		{"empty path", childproc.Spec{}, "empty Path"},
		{"nice 40", childproc.Spec{Path: self, Nice: nice(40)}, "Nice 40"},
		{"nice -21", childproc.Spec{Path: self, Nice: nice(-21)}, "Nice -21"},
		{"cpu 9999", childproc.Spec{Path: self, Affinity: []int{0, 9999}}, "CPU 9999"},
		{"cpu -1", childproc.Spec{Path: self, Affinity: []int{-1}}, "CPU -1"},
		{"env without =", childproc.Spec{Path: self, Env: []string{"NOEQUALS"}}, "not KEY=VALUE"},
		{"env empty key", childproc.Spec{Path: self, Env: []string{"=x"}}, "empty key"},
		{"env duplicate", childproc.Spec{Path: self, Env: []string{"A=1", "B=2", "A=3"}}, `duplicates key "A"`},
		{"env NUL", childproc.Spec{Path: self, Env: []string{"A=1\x00"}}, "NUL"},
		{"inherit bad name", childproc.Spec{Path: self, InheritEnv: []string{"A=B"}}, "not a variable name"},
		{"negative pipe size", childproc.Spec{Path: self, PipeSize: -1}, "PipeSize"},
		{"negative tail", childproc.Spec{Path: self, StderrTail: -1}, "StderrTail"},
		{"bad level", childproc.Spec{Path: self, StderrLevel: hclog.Level(42)}, "StderrLevel"},
		{"nil extra file", childproc.Spec{Path: self, ExtraFiles: []*os.File{os.Stdin, nil}},
			"ExtraFiles[1] (fd 6 in the child) is nil"},
		{"closed extra file", childproc.Spec{Path: self, ExtraFiles: []*os.File{closed}},
			fmt.Sprintf("ExtraFiles[0] %q (fd 5 in the child) is closed", closed.Name())},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.spec.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			p, err := childproc.Start(c.spec)
			assert.Nil(t, p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	zero := uint64(0)
	for _, c := range []struct {
		name string
		spec childproc.Spec
	}{
		{"nonexistent binary", childproc.Spec{Path: "/nonexistent/binary"}},
		{"nonexistent binary with controls", childproc.Spec{Path: "/nonexistent/binary", Nice: nice(3), Limits: childproc.Limits{CoreSize: &zero}}},
		{"unknown name", childproc.Spec{Path: "childproc-no-such-program"}},
		{"not executable", childproc.Spec{Path: "/etc/passwd", Affinity: []int{0}}},
		{"nonexistent dir", childproc.Spec{Path: self, Dir: "/nonexistent/dir"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, c.spec.Validate())
			p, err := childproc.Start(c.spec)
			assert.Nil(t, p)
			require.Error(t, err)
			var se *childproc.StartError
			require.ErrorAs(t, err, &se)
			assert.Contains(t, err.Error(), "childproc: start "+c.spec.Path)
		})
	}
}

// TestStartErrorNamesPathAndDirOnce: whichever layer fails (the program
// or the working directory missing, traced or through the trampoline,
// with or without a namespace), the error names the program and Dir once
// each, says which was missing, and its cause is reachable.
func TestStartErrorNamesPathAndDirOnce(t *testing.T) {
	clean(t)
	self, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	for _, mode := range []string{"traced", "trampoline"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "trampoline" {
				defer childproc.DisablePtraceForTest()()
			}
			for _, c := range []struct {
				name    string
				spec    childproc.Spec
				missing string // the path the cause names
				wantDir bool   // the working directory is to blame
				cause   error
			}{
				{"missing program", childproc.Spec{Path: "/no/such/bin"}, "/no/such/bin", false, fs.ErrNotExist},
				{"missing program in a dir", childproc.Spec{Path: "/no/such/bin", Dir: dir}, "/no/such/bin", false, fs.ErrNotExist},
				{"missing relative program", childproc.Spec{Path: "./no-such-bin", Dir: dir}, "./no-such-bin", false, fs.ErrNotExist},
				{"missing dir", childproc.Spec{Path: self, Dir: "/no/such/dir"}, "/no/such/dir", true, fs.ErrNotExist},
				{"missing dir, sandboxed", childproc.Spec{Path: self, Dir: "/no/such/dir",
					Sandbox: sandbox.Sandbox{NoNewPrivs: true}}, "/no/such/dir", true, fs.ErrNotExist},
				{"not executable", childproc.Spec{Path: "/etc/passwd", Dir: dir}, "/etc/passwd", false, fs.ErrPermission},
			} {
				t.Run(c.name, func(t *testing.T) {
					p, err := childproc.Start(c.spec)
					require.Nil(t, p)
					require.Error(t, err)
					msg := err.Error()
					t.Log(msg)
					assert.Equal(t, 1, strings.Count(msg, c.spec.Path), "the program once in %q", msg)
					if c.spec.Dir != "" {
						assert.Equal(t, 1, strings.Count(msg, c.spec.Dir), "the dir once in %q", msg)
					}
					assert.Equal(t, 1, strings.Count(msg, "childproc:"), "one layer speaks in %q", msg)
					assert.Equal(t, c.wantDir, strings.Contains(msg, "the working directory"), msg)
					assert.ErrorIs(t, err, c.cause)
					var errno syscall.Errno
					require.ErrorAs(t, err, &errno)
					assert.True(t, strings.HasSuffix(msg, ": "+errno.Error()), "the cause last in %q", msg)
					var se *childproc.StartError
					require.ErrorAs(t, err, &se)
					assert.Equal(t, c.spec.Path, se.Path)
					assert.Equal(t, c.spec.Dir, se.Dir)
					var pe *fs.PathError
					require.ErrorAs(t, err, &pe)
					assert.Equal(t, c.missing, pe.Path)
				})
			}
		})
	}
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

func TestPipeSize(t *testing.T) {
	max := 0
	if b, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err == nil {
		max, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	for _, c := range []struct{ ask, want int }{
		{0, min(childproc.DefaultPipeSize, max)},
		{200000, 262144}, // rounded up to a power of two pages
		{1 << 30, max},   // clamped
	} {
		t.Run(strconv.Itoa(c.ask), func(t *testing.T) {
			clean(t)
			spec := selfSpec(t, "echo")
			spec.PipeSize = c.ask
			p := start(t, spec)
			for _, f := range []*os.File{p.Input(), p.Output()} {
				n, err := childproc.PipeCapacity(f)
				require.NoError(t, err)
				assert.Equal(t, c.want, n)
			}
			assert.True(t, p.Stop(context.Background(), waitLong).Success())
		})
	}
}

func TestConcurrentStarts(t *testing.T) {
	clean(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := selfSpec(t, "echo")
			if i%2 == 0 {
				n := 1
				spec.Nice = &n
			}
			p, err := childproc.Start(spec)
			if err != nil {
				errs <- err
				return
			}
			msg := fmt.Sprintf("worker %d\n", i)
			if _, err := p.Input().Write([]byte(msg)); err != nil {
				errs <- err
			}
			buf := make([]byte, len(msg))
			_ = p.Output().SetReadDeadline(time.Now().Add(waitLong))
			if _, err := io.ReadFull(p.Output(), buf); err != nil || string(buf) != msg {
				errs <- fmt.Errorf("worker %d echoed %q: %v", i, buf, err)
			}
			if exit := p.Stop(context.Background(), waitLong); !exit.Success() {
				errs <- fmt.Errorf("worker %d: %v", i, exit)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
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
