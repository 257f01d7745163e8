package childproc_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc"
)

// burstSize is how many setsid children the "burst" escape starts.
const burstSize = 100

// runEscape is the "escape" mode: a worker that starts processes meant to
// outlive it, with tag as their argument, says how many on fd 4, then
// ends as then says: "exit" at once, "crash" by SIGSEGV, "wait" at EOF on
// fd 3.
func runEscape(how, then, tag string) int {
	var pids []int
	quiet := func(setsid bool, stderr *os.File) (int, error) {
		gc := exec.Command(os.Args[0], tag)
		gc.Env = []string{modeEnv + "=quiet"}
		gc.Stderr = stderr
		gc.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
		if err := gc.Start(); err != nil {
			return 0, err
		}
		return gc.Process.Pid, nil
	}
	switch how {
	case "setsid":
		pid, err := quiet(true, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "escape:", err)
			return 1
		}
		pids = append(pids, pid)
	case "doublefork": // fork, setsid, fork, exit: the classic daemon
		mid := exec.Command(os.Args[0], tag)
		mid.Env = []string{modeEnv + "=daemonize"}
		if err := mid.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "escape:", err)
			return 1
		}
		pids = append(pids, 0)
	case "burst":
		for range burstSize {
			pid, err := quiet(true, nil)
			if err != nil {
				fmt.Fprintln(os.Stderr, "escape:", err)
				return 1
			}
			pids = append(pids, pid)
		}
	case "scribble": // a setsid grandchild that holds our stderr and keeps writing to it
		gc := exec.Command(os.Args[0], tag)
		gc.Env = []string{modeEnv + "=scribble"}
		gc.Stderr = os.Stderr
		gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "escape:", err)
			return 1
		}
		pids = append(pids, gc.Process.Pid)
	default:
		fmt.Fprintln(os.Stderr, "escape: unknown kind", how)
		return 2
	}
	say("%d", len(pids))
	switch then {
	case "exit":
		return 0
	case "crash":
		_ = unix.Kill(os.Getpid(), unix.SIGSEGV)
		time.Sleep(time.Hour) // the signal is on its way
		return 1
	default: // wait
		_, _ = io.Copy(io.Discard, fd3)
		return 0
	}
}

// runHostEscape is a host that starts an "escape setsid wait" worker,
// both tagged, and says "started" on fd 4 once the escapee runs, then
// sleeps until it is killed.
func runHostEscape(tag string, ownNamespace bool) int {
	self, err := os.Executable()
	if err != nil {
		return 1
	}
	spec := childproc.Spec{Path: self, Args: []string{"setsid", "wait", tag}, Env: []string{modeEnv + "=escape"}, Name: "worker"}
	spec.Sandbox.Namespaces.PID = ownNamespace
	p, err := childproc.Start(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	if _, err := bufio.NewReader(p.Output()).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "host: no escapee:", err)
		return 1
	}
	say("started")
	select {}
}

// runHostFDs is a host that holds descriptors a careless program might:
// one opened without O_CLOEXEC, and a copy of it on each number in args
// (5 is where the shared memory region would go). It then starts a
// worker without extra files, ls listing its own descriptors (a Go worker
// would list its runtime's as well; a shell its own), relays the listing
// to fd 4 line by line, and ends with "end".
func runHostFDs(args []string) int {
	// Opened with the raw system call: no O_CLOEXEC, as a C library or a
	// careless caller would.
	fd, err := syscall.Open("/proc/self/cmdline", syscall.O_RDONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	held := []int{fd}
	for _, a := range args {
		n := atoi(a)
		if err := syscall.Dup3(fd, n, 0); err != nil {
			fmt.Fprintln(os.Stderr, "host: dup3:", err)
			return 1
		}
		held = append(held, n)
	}
	say("held %v", held)
	p, err := childproc.Start(childproc.Spec{
		Path: "/bin/sh",
		Args: []string{"-c", `exec ls -l /proc/self/fd/ >&4`},
		Name: "worker",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	listing, err := readOutput(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "host: listing:", err)
		return 1
	}
	fd4.Write(listing)
	<-p.Done()
	say("end")
	return 0
}
