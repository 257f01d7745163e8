package childproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// pfExiting is the kernel's PF_EXITING task flag: the process has begun to
// exit (its descriptors close after it is set).
const pfExiting = 0x4

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for user space whatever the kernel's tick.
const userHZ = 100

// CPUTime returns the CPU time the process has used so far, in user and
// system mode together, from /proc/<pid>/stat. It returns
// os.ErrProcessDone once the process has ended.
func (p *Process) CPUTime() (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return 0, os.ErrProcessDone
	}
	var buf [1024]byte
	b, err := readProcFile("/proc/"+strconv.Itoa(p.pid)+"/stat", buf[:0])
	if err != nil {
		return 0, fmt.Errorf("childproc: reading the CPU time of pid %d: %w", p.pid, err)
	}
	return statCPU(b)
}

// statCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat
// line.
func statCPU(b []byte) (time.Duration, error) {
	fields := statFields(b)
	if len(fields) < 13 {
		return 0, errors.New("childproc: malformed /proc stat line")
	}
	var ticks uint64
	for _, f := range fields[11:13] { // fields 14 and 15, counted from the state (field 3)
		n, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("childproc: malformed /proc stat line: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// statFields returns the fields of a /proc/<pid>/stat line after the
// command name, from the state (field 3) on.
func statFields(b []byte) [][]byte {
	i := bytes.LastIndexByte(b, ')') // the command name may hold anything
	if i < 0 {
		return nil
	}
	return bytes.Fields(b[i+1:])
}

// Exiting reports whether the process has ended or has begun to exit, from
// the state and flags in /proc/<pid>/stat. A process that closed one of its
// pipes while alive is not exiting; one whose pipes close because it exits
// is (the kernel sets PF_EXITING before it closes the descriptors), so the
// host can tell the two apart.
func (p *Process) Exiting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return true
	}
	var buf [1024]byte
	b, err := readProcFile("/proc/"+strconv.Itoa(p.pid)+"/stat", buf[:0])
	if err != nil {
		return true // gone from /proc: only a reap, which we do, removes it
	}
	return statExiting(b)
}

// statExiting reads the state (field 3) and flags (field 9) of a
// /proc/<pid>/stat line: a zombie or dead task, or PF_EXITING, is exiting.
func statExiting(b []byte) bool {
	fields := statFields(b)
	if len(fields) < 7 {
		return false
	}
	switch fields[0][0] {
	case 'Z', 'X', 'x':
		return true
	}
	flags, err := strconv.ParseUint(string(fields[6]), 10, 64)
	return err == nil && flags&pfExiting != 0
}
