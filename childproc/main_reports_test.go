package childproc_test

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

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
