package childproc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc"
)

// runHost starts a worker the way a careless caller might: from a goroutine
// locked to its thread that ends without unlocking, which destroys the
// thread. The worker must survive that (Pdeathsig is tied to the forking
// thread) and die only with this host.
func runHost(controls bool, tag string) int {
	// Keep the main thread for the main goroutine: the runtime never
	// destroys the main thread, so the careless goroutine must run on
	// another one.
	runtime.LockOSThread()
	self, err := os.Executable()
	if err != nil {
		return 1
	}
	spec := childproc.Spec{Path: self, Args: []string{tag}, Env: []string{modeEnv + "=sleep"}, Name: "worker"}
	if controls {
		nice := 5
		spec.Nice = &nice
		spec.Affinity = []int{0}
	}
	type result struct {
		p   *childproc.Process
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		p, err := childproc.Start(spec)
		ch <- result{p, err}
	}()
	r := <-ch
	if r.err != nil {
		fmt.Fprintln(os.Stderr, "host:", r.err)
		return 1
	}
	line, err := bufio.NewReader(r.p.Output()).ReadString('\n')
	if err != nil || line != "ready\n" {
		fmt.Fprintln(os.Stderr, "host: worker did not get ready:", line, err)
		return 1
	}
	// Now goroutines lock idle threads and end, destroying them, as some
	// libraries do on purpose: none may be the thread that forked.
	for range 20 {
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				time.Sleep(time.Millisecond)
			}()
		}
		wg.Wait()
	}
	time.Sleep(100 * time.Millisecond) // the locked threads have surely exited by now
	say("started")
	select {
	case <-r.p.Done():
		fmt.Fprintln(os.Stderr, "host: worker ended:", r.p.Exit())
		return 1
	case <-context.Background().Done():
	}
	return 0
}

// denyPtrace installs a seccomp filter on every thread of this process
// that makes ptrace(2) fail with EPERM, as some container profiles do. The
// children inherit it.
func denyPtrace() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_PTRACE},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}

func runHostNoPtrace(tag string) int {
	if err := denyPtrace(); err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		return 1
	}
	nice := 7
	p, err := childproc.Start(childproc.Spec{
		Path:     self,
		Args:     []string{tag},
		Env:      []string{modeEnv + "=controls"},
		Name:     "worker",
		Affinity: []int{0},
		Nice:     &nice,
		Logger:   hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Debug}),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	report, err := bufio.NewReader(p.Output()).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "host: no report:", err)
		p.Kill()
		<-p.Done()
		return 1
	}
	fd4.WriteString(report)
	_, _ = io.Copy(io.Discard, fd3) // until the test stops us
	exit := p.Stop(context.Background(), 10*time.Second)
	if !exit.Success() {
		fmt.Fprintln(os.Stderr, "host: worker ended:", exit)
		return 1
	}
	return 0
}
