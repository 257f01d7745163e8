package childproc

import (
	"bytes"
	"strconv"
)

// pfExiting is the kernel's PF_EXITING task flag: the process has begun to
// exit (its descriptors close after it is set).
const pfExiting = 0x4

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
	i := bytes.LastIndexByte(b, ')') // the command name may hold anything
	if i < 0 {
		return false
	}
	fields := bytes.Fields(b[i+1:])
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
