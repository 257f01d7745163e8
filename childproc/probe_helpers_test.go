package childproc_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runProbe is the "probe" mode: a worker that answers one command per line
// of fd 3 with one line on fd 4, so that a test reads its controls back
// from inside. Errors are answered as "error: <errno name or text>".
//
//	status KEY         the value of KEY in /proc/self/status
//	connect ADDR       dial TCP ADDR (1 s): "ok" or the error
//	ifaces             the network interfaces: name:up|down, space-separated
//	read PATH          read a file: "ok N" (bytes) or the error
//	create PATH        create a file: "ok" or the error
//	cgroup CTRL FILE   read FILE of this process's cgroup in controller CTRL
//	fork N             start N sleeping children: "ok N" or "failed after K: error"
//	alloc MIB          allocate and touch MIB MiB: "ok" (or be killed)
//	unshare            unshare(CLONE_NEWNS): "ok" or the error
//	iouring            io_uring_setup(2), which the default seccomp profile
//	                   denies: "ok" or the error
//	hog MIB            start a child that allocates MIB MiB; its end
//	ns KIND            the /proc/self/ns/KIND link
//	procs              the pids /proc lists, space-separated
//	uidmap             /proc/self/uid_map, spaces squeezed
func runProbe() int {
	in := bufio.NewScanner(fd3)
	var kids []*exec.Cmd
	defer func() {
		for _, k := range kids {
			_ = k.Process.Kill()
			_ = k.Wait()
		}
	}()
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		arg := func(i int) string {
			if i < len(f) {
				return f[i]
			}
			return ""
		}
		var out string
		switch f[0] {
		case "status":
			out = statusField(arg(1))
		case "connect":
			c, err := net.DialTimeout("tcp", arg(1), time.Second)
			if err == nil {
				c.Close()
				out = "ok"
			} else {
				out = "error: " + errText(err)
			}
		case "ifaces":
			ifs, err := net.Interfaces()
			if err != nil {
				out = "error: " + errText(err)
				break
			}
			var parts []string
			for _, i := range ifs {
				state := "down"
				if i.Flags&net.FlagUp != 0 {
					state = "up"
				}
				parts = append(parts, i.Name+":"+state)
			}
			out = strings.Join(parts, " ")
		case "policy":
			attr, err := unix.SchedGetAttr(0, 0)
			if err != nil {
				out = "error: " + errText(err)
			} else {
				out = fmt.Sprintf("%d %d", attr.Policy, attr.Nice)
			}
		case "spin":
			out = spin(time.Duration(atoi(arg(1)))*time.Millisecond, atoi(arg(2)))
		case "loup":
			out = "ok"
			if err := loopbackUp(); err != nil {
				out = "error: " + errText(err)
			}
		case "read":
			b, err := os.ReadFile(arg(1))
			if err != nil {
				out = "error: " + errText(err)
			} else {
				out = "ok " + strconv.Itoa(len(b))
			}
		case "create":
			fh, err := os.Create(arg(1))
			if err != nil {
				out = "error: " + errText(err)
			} else {
				fh.Close()
				out = "ok"
			}
		case "cgroup":
			out = readOwnCgroup(arg(1), arg(2))
		case "fork":
			n := atoi(arg(1))
			started := 0
			var err error
			for range n {
				k := exec.Command(os.Args[0])
				k.Env = []string{modeEnv + "=quiet"}
				if err = k.Start(); err != nil {
					break
				}
				kids = append(kids, k)
				started++
			}
			if err != nil {
				out = fmt.Sprintf("failed after %d: %s", started, errText(err))
			} else {
				out = "ok " + strconv.Itoa(started)
			}
			for _, k := range kids {
				_ = k.Process.Kill()
				_ = k.Wait()
			}
			kids = nil
		case "alloc":
			mem := make([]byte, atoi(arg(1))<<20)
			for i := 0; i < len(mem); i += 4096 {
				mem[i] = 1
			}
			runtime.KeepAlive(mem)
			out = "ok"
		case "unshare":
			runtime.LockOSThread()
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				out = "error: " + errText(err)
			} else {
				out = "ok"
			}
		case "iouring":
			var params [120]byte // struct io_uring_params
			fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
			if errno != 0 {
				out = "error: " + unix.ErrnoName(errno)
			} else {
				unix.Close(int(fd))
				out = "ok"
			}
		case "hog":
			k := exec.Command(os.Args[0], arg(1))
			k.Env = []string{modeEnv + "=hog"}
			err := k.Run()
			if err == nil {
				out = "exited 0"
			} else {
				out = err.Error()
			}
		case "ns":
			l, err := os.Readlink("/proc/self/ns/" + arg(1))
			if err != nil {
				out = "error: " + errText(err)
			} else {
				out = l
			}
		case "procs":
			names, _ := filepath.Glob("/proc/[0-9]*")
			var pids []string
			for _, n := range names {
				pids = append(pids, filepath.Base(n))
			}
			out = strings.Join(pids, " ")
		case "uidmap":
			b, err := os.ReadFile("/proc/self/uid_map")
			if err != nil {
				out = "error: " + errText(err)
			} else {
				out = strings.Join(strings.Fields(string(b)), " ")
			}
		default:
			out = "error: unknown command " + f[0]
		}
		say("%s", out)
	}
	return 0
}

// spin keeps threads busy for d of wall time and reports the CPU time the
// process used meanwhile, in milliseconds, and how many times its cgroup's
// CPU quota throttled it (nr_throttled of the v1 cpu.stat, or of the v2
// one).
func spin(d time.Duration, threads int) string {
	var before, after unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &before)
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for time.Now().Before(end) {
			}
		}()
	}
	wg.Wait()
	_ = unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	stat := readOwnCgroup("cpu", "cpu.stat")
	if strings.HasPrefix(stat, "error") {
		stat = readOwnCgroup("unified", "cpu.stat")
	}
	throttled := "?"
	for _, l := range strings.Split(stat, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "nr_throttled" {
			throttled = f[1]
		}
	}
	return fmt.Sprintf("%d %s", cpu.Milliseconds(), throttled)
}

// loopbackUp brings the loopback interface up (SIOCSIFFLAGS), which takes
// CAP_NET_ADMIN over the network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// errText names an error by its errno where it has one (EPERM, EACCES, ...).
func errText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// statusField returns the value of key in /proc/self/status.
func statusField(key string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "error: " + errText(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "error: no " + key
}

// readOwnCgroup reads file of this process's cgroup of controller ctrl
// (v1, or "unified" for v2), as /proc/self/cgroup names it.
func readOwnCgroup(ctrl, file string) string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "error: " + errText(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mount := ""
		switch {
		case ctrl == "unified" && parts[1] == "":
			mount = "/sys/fs/cgroup/unified"
		case ctrl != "unified" && strings.Contains(","+parts[1]+",", ","+ctrl+","):
			mount = "/sys/fs/cgroup/" + ctrl
		default:
			continue
		}
		v, err := os.ReadFile(filepath.Join(mount, parts[2], file))
		if err != nil {
			return "error: " + errText(err)
		}
		return strings.TrimSpace(string(v))
	}
	return "error: no " + ctrl + " cgroup"
}
