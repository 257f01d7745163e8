package tracee_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
	"github.com/procpool/procpool/childproc/internal/tracee"
)

// stopped starts /bin/sh -c script with its stdout on a pipe, traced and
// stopped after its execve, on the calling goroutine's locked thread.
func stopped(t testing.TB, script string) (*exec.Cmd, *os.File) {
	t.Helper()
	if !tracee.Supported {
		t.Skip("no system call injector on " + runtime.GOARCH)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var ws unix.WaitStatus
	if _, err := unix.Wait4(cmd.Process.Pid, &ws, unix.WALL, nil); err != nil {
		t.Fatal(err)
	}
	if !ws.Stopped() || ws.StopSignal() != syscall.SIGTRAP {
		t.Fatalf("not stopped at exec: %v", ws)
	}
	return cmd, r
}

func TestSyscallsRunInTheTraceeAndItStartsUntouched(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, out := stopped(t, "echo started")
	tr, err := tracee.Attach(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := tr.Syscall("getpid", unix.SYS_GETPID, [6]uintptr{})
	if err != nil || int(pid) != cmd.Process.Pid {
		t.Fatalf("getpid in the tracee = %d, %v; want %d", pid, err, cmd.Process.Pid)
	}
	// An error comes back as the errno, named after the step.
	_, err = tr.Syscall("close 1000", unix.SYS_CLOSE, [6]uintptr{1000})
	if !errors.Is(err, unix.EBADF) {
		t.Fatalf("close(1000) in the tracee: %v, want EBADF", err)
	}
	// A plan with data: write(1, blob) with the blob copied in.
	var p plan.Plan
	msg := []byte("injected\n")
	p.Add("write", unix.SYS_WRITE, plan.Val(1), p.Blob(msg), plan.Val(uintptr(len(msg))))
	if err := tr.Run(&p); err != nil {
		t.Fatal(err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "injected\nstarted\n"; string(got) != want {
		t.Fatalf("output %q, want %q: the program must run as if nothing happened", got, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the program failed after the injection: %v", err)
	}
}

// TestRunStopsAtTheFirstFailure: a plan runs in order and stops at the
// first call that fails, naming it; the calls after it are not made.
func TestRunStopsAtTheFirstFailure(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, out := stopped(t, "echo started")
	tr, err := tracee.Attach(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var p plan.Plan
	first, after := []byte("first\n"), []byte("after\n")
	p.Add("write first", unix.SYS_WRITE, plan.Val(1), p.Blob(first), plan.Val(uintptr(len(first))))
	p.Add("close 1000", unix.SYS_CLOSE, plan.Val(1000))
	p.Add("write after", unix.SYS_WRITE, plan.Val(1), p.Blob(after), plan.Val(uintptr(len(after))))
	err = tr.Run(&p)
	if !errors.Is(err, unix.EBADF) || !strings.Contains(err.Error(), "close 1000") {
		t.Fatalf("Run: %v, want EBADF from the step named close 1000", err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out)
	if want := "first\nstarted\n"; string(got) != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

func TestRelocationsPointBlobsAtBlobs(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, out := stopped(t, "true")
	tr, err := tracee.Attach(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// writev(1, iov, 1) where iov (a blob) points at the text (another).
	var p plan.Plan
	text := p.Blob([]byte("through an iovec\n"))
	iov := make([]byte, 16)
	iov[8] = 17 // iov_len, little-endian
	iovArg := p.Blob(iov)
	p.Relocs = append(p.Relocs, plan.Reloc{Blob: iovArg.Blob - 1, Offset: 0, Target: text.Blob - 1})
	p.Add("writev", unix.SYS_WRITEV, plan.Val(1), iovArg, plan.Val(1))
	if err := tr.Run(&p); err != nil {
		t.Fatal(err)
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out)
	if !bytes.Equal(got, []byte("through an iovec\n")) {
		t.Fatalf("output %q", got)
	}
}

func TestParkedTraceeSleepsForever(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, out := stopped(t, "echo ran")
	tr, err := tracee.Attach(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Park(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(stat, []byte(") S ")) {
		t.Fatalf("parked process is not sleeping: %s", stat)
	}
	_ = cmd.Process.Kill()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("parked process ended with %v, want SIGKILL", err)
	}
	if got, _ := io.ReadAll(out); len(got) != 0 {
		t.Fatalf("a parked process ran its program: %q", got)
	}
}

// BenchmarkSyscall measures one injected system call (a ptrace round trip).
func BenchmarkSyscall(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, _ := stopped(b, "true")
	tr, err := tracee.Attach(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := tr.Syscall("getpid", unix.SYS_GETPID, [6]uintptr{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := tr.Detach(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRun measures a plan of ten calls (one ptrace round trip).
func BenchmarkRun(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, _ := stopped(b, "true")
	tr, err := tracee.Attach(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	var p plan.Plan
	for range 10 {
		p.Add("getpid", unix.SYS_GETPID)
	}
	for b.Loop() {
		if err := tr.Run(&p); err != nil {
			b.Fatal(err)
		}
	}
	if err := tr.Detach(); err != nil {
		b.Fatal(err)
	}
}
