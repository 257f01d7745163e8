package childproc_test

import (
	"bufio"
	"context"
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
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc"
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

// fdView is what the "fds" child says about one of its descriptors.
type fdView struct {
	FD      int
	Target  string // the /proc/self/fd link
	Content string // up to 4 KiB read from offset 0
	Err     string
}

func describeFD(fd int) fdView {
	v := fdView{FD: fd}
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		v.Err = err.Error()
		return v
	}
	v.Target = target
	buf := make([]byte, 4096)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		v.Err = err.Error()
		return v
	}
	v.Content = string(buf[:n])
	return v
}

// threadReport is what the "controls" child says about itself.
type threadReport struct {
	Threads []threadView
	Limits  map[string][2]uint64
}

type threadView struct {
	TID  int
	CPUs []int
	Nice int
}

func selfReport() threadReport {
	var rep threadReport
	entries, _ := os.ReadDir("/proc/self/task")
	for _, e := range entries {
		tid := atoi(e.Name())
		var set unix.CPUSet
		v := threadView{TID: tid}
		if err := unix.SchedGetaffinity(tid, &set); err == nil {
			for cpu := range 1024 {
				if set.IsSet(cpu) {
					v.CPUs = append(v.CPUs, cpu)
				}
			}
		}
		// getpriority returns 20-nice for a thread (the raw syscall).
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err == nil {
			v.Nice = 20 - prio
		}
		rep.Threads = append(rep.Threads, v)
	}
	rep.Limits = map[string][2]uint64{}
	for name, res := range map[string]int{"AS": unix.RLIMIT_AS, "NOFILE": unix.RLIMIT_NOFILE,
		"CPU": unix.RLIMIT_CPU, "CORE": unix.RLIMIT_CORE} {
		var l unix.Rlimit
		if unix.Getrlimit(res, &l) == nil {
			rep.Limits[name] = [2]uint64{l.Cur, l.Max}
		}
	}
	return rep
}

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
