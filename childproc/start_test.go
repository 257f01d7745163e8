package childproc_test

import (
	"context"
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
	"github.com/procpool/procpool/sandbox"
)

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
