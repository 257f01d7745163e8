package childproc_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/internal/proctest"
)

// modeEnv selects what the test binary does when it is started as a child:
// it runs that mode and exits instead of running the tests.
const modeEnv = "CHILDPROC_TEST_MODE"

func TestMain(m *testing.M) {
	if mode := os.Getenv(modeEnv); mode != "" {
		os.Exit(runMode(mode, os.Args[1:]))
	}
	proctest.VerifyTestMain(m)
}

// The protocol pipes of a child.
var (
	fd3 = os.NewFile(3, "fd3")
	fd4 = os.NewFile(4, "fd4")
)

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func say(format string, args ...any) { fmt.Fprintf(fd4, format+"\n", args...) }

func sleepForever() { select {} }

// runMode is the child side of the tests. It returns the exit code.
func runMode(mode string, args []string) int {
	switch mode {
	case "echo": // copy fd 3 to fd 4 until EOF
		if _, err := io.Copy(fd4, fd3); err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
			return 1
		}
		return 0

	case "exit": // exit with args[0]
		return atoi(args[0])

	case "spam": // args[0] lines (padded to args[1] bytes) to stdout and to stderr while echoing
		n := atoi(args[0])
		pad := ""
		if len(args) > 1 {
			pad = " " + strings.Repeat("p", atoi(args[1]))
		}
		var wg sync.WaitGroup
		for _, w := range []struct {
			f      *os.File
			prefix string
		}{{os.Stdout, "out"}, {os.Stderr, "err"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bw := bufio.NewWriterSize(w.f, 512)
				for i := range n {
					fmt.Fprintf(bw, "%s %d%s\n", w.prefix, i, pad)
				}
				bw.Flush()
			}()
		}
		_, err := io.Copy(fd4, fd3)
		wg.Wait()
		if err != nil {
			return 1
		}
		return 0

	case "longline": // a line of args[0] bytes on stderr, then a short one, then echo
		os.Stderr.WriteString(strings.Repeat("x", atoi(args[0])) + "\nafter-long\n")
		_, _ = io.Copy(fd4, fd3)
		return 0

	case "stderrlines": // args[0] lines on stderr, exit 1
		for i := range atoi(args[0]) {
			fmt.Fprintf(os.Stderr, "line %d\n", i)
		}
		return 1

	case "sleep": // say ready, never read fd 3, die of SIGTERM
		say("ready")
		sleepForever()

	case "quiet": // sleep without a word (a grandchild)
		sleepForever()

	case "stubborn": // ignore SIGTERM and EOF
		signal.Ignore(syscall.SIGTERM)
		say("ready")
		sleepForever()

	case "grandchild": // start a grandchild tagged args[1], say "started"; then args[0]: echo | exit | escape
		gc := exec.Command(os.Args[0], args[1])
		gc.Env = []string{modeEnv + "=quiet"}
		gc.Stdout, gc.Stderr = os.Stdout, os.Stderr // it holds the output pipes too
		if args[0] == "escape" {
			gc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		}
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "grandchild:", err)
			return 1
		}
		say("started")
		if args[0] == "echo" {
			_, _ = io.Copy(fd4, fd3)
		}
		return 0

	case "controls": // start threads, report what each sees, wait for EOF
		release := make(chan struct{})
		var started sync.WaitGroup
		for range 4 {
			started.Add(1)
			go func() {
				runtime.LockOSThread() // a thread of its own, made after the start
				started.Done()
				<-release
				runtime.UnlockOSThread()
			}()
		}
		started.Wait()
		json.NewEncoder(fd4).Encode(selfReport())
		_, _ = io.Copy(io.Discard, fd3)
		close(release)
		return 0

	case "alloc": // say ready; on a byte from fd 3 allocate args[0] MiB, say done; wait for EOF
		say("ready")
		var b [1]byte
		if _, err := fd3.Read(b[:]); err != nil {
			return 1
		}
		mem := make([]byte, atoi(args[0])<<20)
		for i := 0; i < len(mem); i += 4096 {
			mem[i] = 1
		}
		say("done")
		_, _ = io.Copy(io.Discard, fd3)
		runtime.KeepAlive(mem)
		return 0

	case "burn": // use 200ms of CPU and 16 MiB, then exit 0
		x := 0
		for cpu := time.Duration(0); cpu < 200*time.Millisecond; {
			for i := range 100000 {
				x += i * i
			}
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		mem := make([]byte, 16<<20)
		for i := 0; i < len(mem); i += 4096 {
			mem[i] = byte(x)
		}
		runtime.KeepAlive(mem)
		return 0

	case "fds": // on a byte from fd 3, describe each fd in args as a JSON line; then echo
		var b [1]byte
		if _, err := fd3.Read(b[:]); err != nil {
			return 1
		}
		enc := json.NewEncoder(fd4)
		for _, a := range args {
			enc.Encode(describeFD(atoi(a)))
		}
		_, _ = io.Copy(fd4, fd3)
		return 0

	case "shm": // say ready; on a byte from fd 3 map fd 5 shared, populated, say done; wait for EOF
		say("ready")
		var b [1]byte
		if _, err := fd3.Read(b[:]); err != nil {
			return 1
		}
		var st unix.Stat_t
		if err := unix.Fstat(5, &st); err != nil {
			fmt.Fprintln(os.Stderr, "shm:", err)
			return 1
		}
		// MAP_POPULATE faults every page in from the kernel: no Go code
		// touches the mapping, so a -race child does not grow its
		// (anonymous) shadow memory for it.
		mem, err := unix.Mmap(5, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			fmt.Fprintln(os.Stderr, "shm:", err)
			return 1
		}
		say("done")
		_, _ = io.Copy(io.Discard, fd3)
		_ = unix.Munmap(mem)
		return 0

	case "env": // the environment on fd 4
		for _, kv := range os.Environ() {
			say("%s", kv)
		}
		return 0

	case "host": // start a worker tagged args[1], say "started", sleep; args[0] = "controls" to set some
		return runHost(args[0] == "controls", args[1])

	case "host-noptrace": // forbid ptrace, start a "controls" worker tagged args[0], relay its report
		return runHostNoPtrace(args[0])

	case "escape": // start escapees tagged args[2] (args[0]: setsid | doublefork | burst | scribble), say how many; then args[1]
		return runEscape(args[0], args[1], args[2])

	case "daemonize": // start a setsid "quiet" grandchild tagged args[0], exit
		gc := exec.Command(os.Args[0], args[0])
		gc.Env = []string{modeEnv + "=quiet"}
		gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := gc.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "daemonize:", err)
			return 1
		}
		return 0

	case "scribble": // write a line to stderr every millisecond, forever
		for i := 0; ; i++ {
			fmt.Fprintf(os.Stderr, "scribble %d\n", i)
			time.Sleep(time.Millisecond)
		}

	case "host-escape": // start an "escape setsid wait" worker tagged args[0] (args[1] "true": in a PID namespace of its own), say "started", sleep
		return runHostEscape(args[0], args[1] == "true")

	case "host-fds": // hold stray descriptors, start an "fds" worker, relay its report
		return runHostFDs(args)

	case "probe": // answer commands from fd 3 about this process (see runProbe)
		return runProbe()

	case "hog": // allocate and touch args[0] MiB, then exit 0
		mem := make([]byte, atoi(args[0])<<20)
		for i := 0; i < len(mem); i += 4096 {
			mem[i] = 1
		}
		runtime.KeepAlive(mem)
		return 0

	case "emptylines": // args[0] empty lines on stdout, then echo
		w := bufio.NewWriterSize(os.Stdout, 1<<16)
		for range atoi(args[0]) {
			w.WriteByte('\n')
		}
		w.Flush()
		_, _ = io.Copy(fd4, fd3)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown mode", mode)
	return 2
}
