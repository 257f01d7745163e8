package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// Cgroup is the cgroup of one worker: the limits of a Sandbox (memory, CPU
// quota, tasks) and, where the kernel allows, a way to kill every process
// in it at once. It lives under the host process's own cgroup, in each
// hierarchy it uses, and is named procpool-<host pid>-<n>. It speaks
// cgroup v2 where the unified hierarchy has the controllers it needs, and
// v1 (separate memory, cpu, pids and freezer hierarchies) otherwise;
// github.com/containerd/cgroups does the file system work.
//
// The processes a worker starts are in its cgroup too, wherever they go
// (setsid, double fork): only a process allowed to write to the cgroup
// file system (root, without a user namespace) can move itself out.
type Cgroup struct {
	name  string
	v1    cgroup1.Cgroup   // limits, OOM counter (and the freezer, to kill) on v1; nil if none
	v2    *cgroup2.Manager // limits, OOM counter and kill on v2; nil if none
	v2dir string           // its directory on v2, once worked out
	// kill says how Kill works: "cgroup.kill" (v2), "freezer" (v1), or
	// "" (it cannot).
	kill string
	// killed: Kill was called. (Linux 6.18 kills at birth any process
	// cloned with CLONE_INTO_CGROUP into a cgroup that was ever killed
	// through cgroup.kill: such a cgroup is not to be reused.)
	killed bool
	// limited: it has limits (memory, CPU, tasks).
	limited bool
	// oomFile is the file of its memory controller that counts its OOM
	// kills (memory.events on v2, memory.oom_control on v1), or "" if it
	// has no Memory limit: no OOM kill is then counted for it.
	oomFile string
	// oomBase is the kernel's OOM kill count when ResetCounters was last
	// called: OOMKills counts from there.
	oomBase uint64
}

var cgroupSeq atomic.Uint64

// NewCgroup creates the cgroup for one worker with the limits of s (its
// Memory, CPU and Pids) and, with killable, a way to kill its members
// (cgroup.kill on v2, the freezer on v1). An error matching
// ErrUnsupported says what this machine lacks.
func NewCgroup(s *Sandbox, killable bool) (*Cgroup, error) {
	sup := probeCgroups()
	name := fmt.Sprintf("procpool-%d-%d", os.Getpid(), cgroupSeq.Add(1))
	limits := s.NeedsCgroup()
	c := &Cgroup{name: name, limited: limits}
	if limits {
		if err := sup.limitsError(s); err != nil {
			return nil, err
		}
	}
	if killable && sup.kill == "" {
		return nil, fmt.Errorf("%w: no cgroup can be killed here: %s", ErrUnsupported, sup.why)
	}
	useV2 := sup.v2Path != "" && (limits && sup.v2Limits || killable && sup.kill == "cgroup.kill")
	if useV2 {
		res := &cgroup2.Resources{}
		if limits && sup.v2Limits {
			res = v2Resources(s)
		}
		m, err := cgroup2.NewManager(sup.v2Mount, filepath.Join(sup.v2Path, name), res)
		if err != nil {
			return nil, fmt.Errorf("sandbox: creating cgroup %s (v2): %w", name, err)
		}
		c.v2 = m
		if limits && sup.v2Limits && s.Memory > 0 {
			// Only under a Memory limit of its own: without one, v2's
			// counter also counts the kills of the host's OOM killer,
			// which are not the worker's going over a limit.
			c.oomFile = filepath.Join(c.v2Path(), "memory.events")
		}
		if killable && sup.kill == "cgroup.kill" {
			c.kill = "cgroup.kill"
		}
	}
	var v1 []cgroup1.Name
	if limits && !sup.v2Limits {
		if s.Memory > 0 {
			v1 = append(v1, cgroup1.Memory)
		}
		if s.CPU > 0 {
			v1 = append(v1, cgroup1.Cpu)
		}
		if s.Pids > 0 {
			v1 = append(v1, cgroup1.Pids)
		}
	}
	if killable && c.kill == "" {
		v1 = append(v1, cgroup1.Freezer)
		c.kill = "freezer"
	}
	if len(v1) > 0 {
		cg, err := cgroup1.New(sup.v1Path(name), v1Resources(s, sup.memsw), cgroup1.WithHierarchy(sup.only(v1...)))
		if err != nil {
			c.Delete()
			return nil, fmt.Errorf("sandbox: creating cgroup %s (v1 %v): %w", name, v1, err)
		}
		c.v1 = cg
		for _, s := range cg.Subsystems() {
			if s.Name() == cgroup1.Memory {
				c.oomFile = filepath.Join(v1Root(s), sup.v1Own[cgroup1.Memory], name, "memory.oom_control")
			}
		}
	}
	return c, nil
}

// Name returns the cgroup's name (its last path element).
func (c *Cgroup) Name() string { return c.name }

// Limited reports whether the cgroup has limits: its memory charge and
// counters then belong to its workers, and it is reused, if at all, only
// for a worker with the same limits, after ResetCounters.
func (c *Cgroup) Limited() bool { return c.limited }

// Killable reports whether Kill can empty the cgroup.
func (c *Cgroup) Killable() bool { return c.kill != "" }

// Add moves process pid (all its threads) into the cgroup.
func (c *Cgroup) Add(pid int) error {
	if c.v2 != nil {
		if err := c.v2.AddProc(uint64(pid)); err != nil {
			return fmt.Errorf("sandbox: adding pid %d to cgroup %s: %w", pid, c.name, err)
		}
	}
	return c.AddV1(pid)
}

// Dir opens the cgroup's directory on v2 (O_PATH), for a process to be
// cloned into it (clone3 with CLONE_INTO_CGROUP, syscall.SysProcAttr's
// UseCgroupFD): cheaper than moving it in, which costs the kernel a
// migration. It returns nil if the cgroup has no v2 part.
func (c *Cgroup) Dir() (*os.File, error) {
	if c.v2 == nil {
		return nil, nil
	}
	return os.OpenFile(c.v2Path(), os.O_RDONLY|unix.O_PATH|unix.O_DIRECTORY, 0)
}

// AddV1 moves process pid into the cgroup's v1 hierarchies only (a
// process cloned into its v2 part).
func (c *Cgroup) AddV1(pid int) error {
	if c.v1 != nil {
		if err := c.v1.Add(cgroup1.Process{Pid: pid}); err != nil {
			return fmt.Errorf("sandbox: adding pid %d to cgroup %s: %w", pid, c.name, err)
		}
	}
	return nil
}

// Kill sends SIGKILL to every process in the cgroup, including those
// forking while it runs. It does not wait for them to be gone: Empty
// reports that.
func (c *Cgroup) Kill() error {
	c.killed = true
	switch c.kill {
	case "cgroup.kill":
		return c.v2.Kill()
	case "freezer":
		return c.freezeKill()
	}
	return errors.New("sandbox: this cgroup cannot be killed")
}

// freezeKill freezes the v1 cgroup (no member can fork while frozen),
// sends SIGKILL to each member, and thaws it so that they die.
func (c *Cgroup) freezeKill() error {
	if err := c.v1.Freeze(); err != nil {
		return fmt.Errorf("sandbox: freezing cgroup %s: %w", c.name, err)
	}
	procs, err := c.v1.Processes(cgroup1.Freezer, true)
	for _, p := range procs {
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	if terr := c.v1.Thaw(); terr != nil && err == nil {
		err = terr
	}
	if err != nil {
		return fmt.Errorf("sandbox: killing cgroup %s: %w", c.name, err)
	}
	return nil
}

// Killed reports whether Kill was ever called.
func (c *Cgroup) Killed() bool { return c.killed }

// Empty reports whether no process is left in the cgroup (its own: a
// worker's cgroup has no children): "populated 0" in cgroup.events on v2,
// an empty cgroup.procs in each v1 hierarchy.
func (c *Cgroup) Empty() bool {
	if c.v2 != nil {
		n, err := readKey(c.v2Path()+"/cgroup.events", "populated")
		if err != nil || n != 0 {
			return false
		}
	}
	if c.v1 != nil {
		sup := probeCgroups()
		for _, s := range c.v1.Subsystems() {
			b, err := os.ReadFile(filepath.Join(v1Root(s), sup.v1Own[s.Name()], c.name, "cgroup.procs"))
			if err != nil || len(b) > 0 {
				return false
			}
		}
	}
	return true
}

// KillAll kills the cgroup's members until none is left or d has passed
// (a process being killed stays a member until it has exited).
func (c *Cgroup) KillAll(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if c.Empty() {
			return nil
		}
		if err := c.Kill(); err != nil {
			return err
		}
		if c.Empty() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox: cgroup %s still has processes after %v", c.name, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// OOMKills returns the number of processes the kernel's OOM killer has
// killed in the cgroup for being over its Memory limit, from the cgroup's
// own counter (memory.events on v2, memory.oom_control on v1), since it
// was made or since ResetCounters. A cgroup without a Memory limit has no
// counter: zero.
func (c *Cgroup) OOMKills() (uint64, error) {
	n, err := c.oomKills()
	if err != nil || n < c.oomBase {
		return 0, err
	}
	return n - c.oomBase, nil
}

// ResetCounters makes the counters the cgroup reports (OOMKills) start
// from zero again, for an empty cgroup given to another worker. The
// kernel's own counters keep counting; so do its charges (the page cache
// and tmpfs files its members left, which stay charged to it).
func (c *Cgroup) ResetCounters() error {
	n, err := c.oomKills()
	if err != nil {
		return fmt.Errorf("sandbox: resetting the counters of cgroup %s: %w", c.name, err)
	}
	c.oomBase = n
	return nil
}

// oomKills is the kernel's OOM kill count of the cgroup.
func (c *Cgroup) oomKills() (uint64, error) {
	if c.oomFile == "" {
		return 0, nil
	}
	return readKey(c.oomFile, "oom_kill")
}

// v2Path is the cgroup's directory on v2.
func (c *Cgroup) v2Path() string {
	if c.v2dir == "" {
		sup := probeCgroups()
		c.v2dir = filepath.Join(sup.v2Mount, sup.v2Path, c.name)
	}
	return c.v2dir
}

// Delete removes the cgroup; it must be empty. Deleting it twice is
// harmless. (An empty cgroup's directory is removed with rmdir(2); the
// library's Delete first walks and stats every file of it.)
func (c *Cgroup) Delete() error {
	var dirs []string
	if c.v2 != nil {
		dirs = append(dirs, c.v2Path())
	}
	if c.v1 != nil {
		sup := probeCgroups()
		for _, s := range c.v1.Subsystems() {
			dirs = append(dirs, filepath.Join(v1Root(s), sup.v1Own[s.Name()], c.name))
		}
	}
	var err error
	for _, d := range dirs {
		if e := os.Remove(d); e != nil && !errors.Is(e, os.ErrNotExist) {
			err = errors.Join(err, e)
		}
	}
	if err != nil {
		return fmt.Errorf("sandbox: deleting cgroup %s: %w", c.name, err)
	}
	return nil
}

// readKey reads the value of key in a flat-keyed cgroup file ("key
// value" lines). The files are small: it reads at most 4 KiB, with no
// stat.
func readKey(path, key string) (uint64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var buf [4096]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil {
		return 0, &os.PathError{Op: "read", Path: path, Err: err}
	}
	b := buf[:n]
	for len(b) > 0 {
		line := b
		if i := indexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) > len(key) && string(line[:len(key)]) == key && line[len(key)] == ' ' {
			return strconv.ParseUint(string(line[len(key)+1:]), 10, 64)
		}
	}
	return 0, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
