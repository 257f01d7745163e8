package childproc

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// Memory is a process's resident memory, from /proc/<pid>/status.
type Memory struct {
	RSS   uint64 // VmRSS: every resident page, in bytes
	Anon  uint64 // RssAnon: private anonymous pages (heap, stacks)
	File  uint64 // RssFile: pages of mapped files (the binary, libraries)
	Shmem uint64 // RssShmem: shared memory pages (memfd, tmpfs, SysV shm)
}

// statusBufSize is the stack buffer Memory reads /proc/<pid>/status into;
// the file is about 1.5 KiB. A longer one is read whole all the same.
const statusBufSize = 4096

// Memory returns the resident memory of the process in bytes, read from
// /proc/<pid>/status (the RSS is the sum of the other three). It returns
// os.ErrProcessDone once the process has ended. It allocates little and
// is meant to be called often, at every heartbeat say.
func (p *Process) Memory() (Memory, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return Memory{}, os.ErrProcessDone
	}
	var buf [statusBufSize]byte
	b, err := readProcFile(p.statusPath, buf[:0])
	if err != nil {
		return Memory{}, fmt.Errorf("childproc: reading the memory of pid %d: %w", p.pid, err)
	}
	m, err := parseMemory(b)
	switch {
	case errors.Is(err, os.ErrProcessDone): // exited, not reaped yet
		return Memory{}, os.ErrProcessDone
	case err != nil:
		return Memory{}, fmt.Errorf("childproc: malformed %s: %w", p.statusPath, err)
	}
	return m, nil
}

// readProcFile appends the content of the file at path to buf and returns
// it; it grows buf only if the file does not fit.
func readProcFile(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// Bits of parseMemory's seen mask, one per field.
const (
	seenRSS = 1 << iota
	seenAnon
	seenFile
	seenShmem
	seenAll = seenRSS | seenAnon | seenFile | seenShmem
)

// parseMemory reads the VmRSS, RssAnon, RssFile and RssShmem lines of the
// content of a /proc/<pid>/status file. It returns os.ErrProcessDone if
// the State line says the process is a zombie or dead (such a file has no
// memory lines), and an error naming the line for a missing field or a
// value that is not a number of kB. It does not allocate unless it fails.
func parseMemory(b []byte) (Memory, error) {
	var m Memory
	seen := 0
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var field *uint64
		var bit int
		switch string(key) {
		case "State":
			if v := bytes.TrimLeft(value, " \t"); len(v) > 0 && (v[0] == 'Z' || v[0] == 'X') {
				return Memory{}, os.ErrProcessDone
			}
			continue
		case "VmRSS":
			field, bit = &m.RSS, seenRSS
		case "RssAnon":
			field, bit = &m.Anon, seenAnon
		case "RssFile":
			field, bit = &m.File, seenFile
		case "RssShmem":
			field, bit = &m.Shmem, seenShmem
		default:
			continue
		}
		n, ok := parseKB(value)
		if !ok {
			return Memory{}, fmt.Errorf("%s value %q is not a size in kB", string(key), string(value))
		}
		*field = n
		seen |= bit
	}
	if seen != seenAll {
		for _, f := range []struct {
			bit  int
			name string
		}{{seenRSS, "VmRSS"}, {seenAnon, "RssAnon"}, {seenFile, "RssFile"}, {seenShmem, "RssShmem"}} {
			if seen&f.bit == 0 {
				return Memory{}, fmt.Errorf("no %s line", f.name)
			}
		}
	}
	return m, nil
}

// parseKB parses a value such as "\t    1740 kB" into bytes.
func parseKB(v []byte) (uint64, bool) {
	v = bytes.TrimLeft(v, " \t")
	v, ok := bytes.CutSuffix(v, []byte(" kB"))
	if !ok || len(v) == 0 {
		return 0, false
	}
	const limit = math.MaxUint64 / 1024 // in kB
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (limit-d)/10 {
			return 0, false // overflows
		}
		n = n*10 + d
	}
	return n * 1024, true
}
