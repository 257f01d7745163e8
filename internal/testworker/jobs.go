package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/procpool/procpool/codec"
)

// garbage writes bytes that are not a valid frame onto the protocol pipe,
// behind the SDK's back, then waits to be cancelled or killed.
func garbage(ctx context.Context, p []byte) ([]byte, error) {
	var b []byte
	switch string(p) {
	case "", "malformed":
		b = []byte{0, 0, 0, 3, 0xc1, 0xc1, 0xc1} // 0xc1 is never valid msgpack
	case "huge":
		b = []byte{0xff, 0xff, 0xff, 0xff}
	case "badspan":
		var buf bytes.Buffer
		m := codec.Message{Kind: codec.KindResponse, ID: 1 << 62, Shared: true, Span: codec.Span{Offset: 1 << 50, Length: 64}}
		if err := codec.NewWriter(&buf, 0).Write(&m); err != nil {
			return nil, err
		}
		b = buf.Bytes()
	default:
		return nil, fmt.Errorf("garbage: unknown kind %q", p)
	}
	if err := writeFd(4, b); err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// writeFd writes b to fd with raw system calls: wrapping fd in an *os.File
// would close it when the File is garbage collected. The SDK made the fd
// non-blocking, hence the retries.
func writeFd(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("writing to fd %d: %w", fd, err)
		}
		b = b[n:]
	}
	return nil
}

// hoard keeps what alloc allocated.
var hoard [][]byte

// alloc allocates <MiB> MiB, touches every page so that it counts in the
// RSS, keeps it, and returns the total kept in MiB.
func alloc(ctx context.Context, p []byte) ([]byte, error) {
	n, err := number(p)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	hoard = append(hoard, b)
	total := 0
	for _, h := range hoard {
		total += len(h) >> 20
	}
	return []byte(strconv.Itoa(total)), nil
}

// grandchild starts a copy of this binary that sleeps forever and returns
// its pid. The worker reaps it if it dies first.
func grandchild(ctx context.Context, p []byte) ([]byte, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TESTWORKER_MODE=sleep_forever")
	if string(p) == "stdio" || string(p) == "setsid" {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	if string(p) == "setsid" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go cmd.Wait()
	return []byte(strconv.Itoa(cmd.Process.Pid)), nil
}

// selfinfo returns /proc/self/status, a line "--- threads", then one line
// per thread: "tid=<tid> nice=<nice> cpus=<Cpus_allowed_list>".
func selfinfo(ctx context.Context, p []byte) ([]byte, error) {
	var b bytes.Buffer
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	b.Write(status)
	b.WriteString("--- threads\n")
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		return nil, err
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(task, "stat"))
		if err != nil {
			continue // the thread is gone
		}
		// Fields after the parenthesised command name: state is field 3,
		// nice field 19.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		nice := "?"
		if len(fields) > 16 {
			nice = fields[16]
		}
		cpus := "?"
		if st, err := os.ReadFile(filepath.Join(task, "status")); err == nil {
			for _, line := range strings.Split(string(st), "\n") {
				if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
					cpus = strings.TrimSpace(v)
				}
			}
		}
		fmt.Fprintf(&b, "tid=%s nice=%s cpus=%s\n", filepath.Base(task), nice, cpus)
	}
	return b.Bytes(), nil
}

// hangAll stops the whole process, as a worker stuck in a system call or a
// tight loop with the runtime wedged would look to the host: nothing is
// read or written any more. SIGKILL still ends it; SIGCONT resumes it.
func hangAll(ctx context.Context, p []byte) ([]byte, error) {
	if err := syscall.Kill(os.Getpid(), syscall.SIGSTOP); err != nil {
		return nil, err
	}
	return []byte("resumed"), nil
}
