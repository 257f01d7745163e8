package distributed_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool/internal/gobuild"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/internal/testbin"
)

// The helper binary (internal/testnode), built once per test process,
// without the race detector, so that servers and nodes run at full speed.
var helper struct {
	sync.Mutex
	dir, path string
}

func helperPath(t testing.TB) string {
	t.Helper()
	helper.Lock()
	defer helper.Unlock()
	if helper.path != "" {
		return helper.path
	}
	dir, err := os.MkdirTemp("", "procpool-testnode-")
	if err != nil {
		t.Fatal(err)
	}
	p, err := gobuild.Build(dir, "testnode", "github.com/procpool/procpool/distributed/internal/testnode")
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	helper.dir, helper.path = dir, p
	return p
}

func cleanupHelper() {
	helper.Lock()
	defer helper.Unlock()
	if helper.dir != "" {
		os.RemoveAll(helper.dir)
	}
	helper.dir, helper.path = "", ""
}

// proc is a helper process: a server or a node.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string   // its stdout lines after "ready"
	done  chan struct{} // closed once it has been reaped
	err   error         // its exit, once done is closed
}

// startProc starts the helper with args and waits for its "ready" line.
// Its stderr goes to the test log. It is killed at the end of the test if
// still running.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(helperPath(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	ready := make(chan string, 1)
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t.Logf("[%s] %s", name, sc.Text())
		}
	}()
	go func() {
		defer pipes.Done()
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		first := true
		for sc.Scan() {
			if first && strings.HasPrefix(sc.Text(), "ready") {
				first = false
				ready <- sc.Text()
				continue
			}
			p.lines <- sc.Text()
		}
	}()
	go func() {
		pipes.Wait() // Wait closes the pipes: read them to the end first
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("%s exited before it was ready: %v", name, p.err)
	case <-time.After(60 * time.Second):
		p.kill()
		t.Fatalf("%s not ready within 60s", name)
	}
	return p
}

// kill sends SIGKILL and waits for the process to be reaped.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stopAll stops the processes at once (see stop) and returns what each
// printed after "ready".
func stopAll(t testing.TB, ps ...*proc) [][]string {
	t.Helper()
	for _, p := range ps {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	out := make([][]string, len(ps))
	for i, p := range ps {
		out[i] = p.stop(t)
	}
	return out
}

// stop sends SIGTERM, waits for a clean exit and returns what it printed
// after "ready".
func (p *proc) stop(t testing.TB) []string {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var out []string
	timeout := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if ok {
				out = append(out, l)
				continue
			}
			p.lines = nil
		case <-p.done:
			if p.lines != nil {
				for l := range p.lines {
					out = append(out, l)
				}
			}
			if p.err != nil {
				t.Errorf("%s: %v", p.name, p.err)
			}
			return out
		case <-timeout:
			p.kill()
			t.Fatalf("%s did not stop within 90s of SIGTERM", p.name)
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serverProc starts an embedded server in a helper process, on port with
// JetStream in dir.
func serverProc(t testing.TB, dir string, port int, extra ...string) (*proc, string) {
	t.Helper()
	p := startProc(t, "nats", append([]string{"server", "-dir", dir, "-port", fmt.Sprint(port)}, extra...)...)
	return p, fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// nodeProc starts a node serving the sha512 job type (or the -type given
// in extra) with the test worker, in a helper process.
func nodeProc(t testing.TB, url, name string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"node", "-url", url, "-name", name, "-worker", testbin.Path(t)}, extra...)
	return startProc(t, name, args...)
}

// verifyNoWorkers fails the test if a process of the test worker binary
// (this test run's own) is still alive: the workers of a killed node die
// with it.
func verifyNoWorkers(t testing.TB) {
	t.Helper()
	bin := testbin.Path(t)
	var left []int
	ok := proctest.WaitFor(proctest.DefaultWait, func() bool {
		left = left[:0]
		for _, p := range proctest.All() {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); err == nil && exe == bin && p.State != 'Z' {
				left = append(left, p.PID)
			}
		}
		return len(left) == 0
	})
	if !ok {
		for _, pid := range left {
			t.Errorf("worker left behind: %s", proctest.Describe(pid))
		}
	}
}
