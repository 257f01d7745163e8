package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	// has no memory controller: no OOM kill is then counted for it.
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
		if sup.v2Limits { // the memory controller is on for our children
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

// only is a cgroup1 hierarchy of the named subsystems (probed once).
func (sup *cgroupSupport) only(names ...cgroup1.Name) cgroup1.Hierarchy {
	return func() ([]cgroup1.Subsystem, error) {
		out := make([]cgroup1.Subsystem, 0, len(names))
		for _, n := range names {
			sub, ok := sup.v1Subs[n]
			if !ok {
				return nil, fmt.Errorf("%w: the cgroup v1 %s hierarchy is not mounted", ErrUnsupported, n)
			}
			out = append(out, sub)
		}
		return out, nil
	}
}

// v1Path is the path of cgroup name under this process's own cgroup in
// each v1 hierarchy (which cgroup1.NestedPath would work out again, from
// /proc/self/mountinfo, for every worker).
func (sup *cgroupSupport) v1Path(name string) cgroup1.Path {
	return func(n cgroup1.Name) (string, error) {
		p, ok := sup.v1Own[n]
		if !ok {
			return "", cgroup1.ErrControllerNotActive
		}
		return filepath.Join(p, name), nil
	}
}

func v2Resources(s *Sandbox) *cgroup2.Resources {
	r := &cgroup2.Resources{}
	if s.Memory > 0 {
		max := int64(s.Memory)
		swap := int64(0)
		r.Memory = &cgroup2.Memory{Max: &max, Swap: &swap}
	}
	if s.CPU > 0 {
		quota := int64(s.CPU * cpuPeriod)
		period := uint64(cpuPeriod)
		r.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)}
	}
	if s.Pids > 0 {
		r.Pids = &cgroup2.Pids{Max: int64(s.Pids)}
	}
	return r
}

func v1Resources(s *Sandbox, memsw bool) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if s.Memory > 0 {
		limit := int64(s.Memory)
		r.Memory = &specs.LinuxMemory{Limit: &limit}
		if memsw { // no swapping past the limit either
			r.Memory.Swap = &limit
		}
	}
	if s.CPU > 0 {
		quota := int64(s.CPU * cpuPeriod)
		period := uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if s.Pids > 0 {
		limit := int64(s.Pids)
		r.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return r
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
// was made or since ResetCounters. A cgroup without a memory controller
// (no Memory limit, where the limits are on v1) has no counter: zero.
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

// v1Root is the mount point of a v1 hierarchy.
func v1Root(s cgroup1.Subsystem) string {
	if p, ok := s.(interface{ Path(string) string }); ok {
		return p.Path("/")
	}
	return ""
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

// cgroupSupport is what the cgroup file systems of this machine offer to
// this process, probed once.
type cgroupSupport struct {
	mode cgroups.CGMode
	// v2Mount is the unified hierarchy's mount point and v2Path this
	// process's cgroup in it; v2Path is empty if unusable.
	v2Mount, v2Path string
	// v2Limits: memory, cpu and pids can be enabled for our children.
	v2Limits bool
	// v1 lists the writable v1 hierarchies under our own cgroups; v1Subs
	// the mounted ones, and v1Own our cgroup in each.
	v1     map[cgroup1.Name]bool
	v1Subs map[cgroup1.Name]cgroup1.Subsystem
	v1Own  map[cgroup1.Name]string
	// memsw: v1 memory has swap accounting.
	memsw bool
	// kill is "cgroup.kill", "freezer" or "".
	kill string
	// why explains what is missing, for errors.
	why string
}

var (
	cgroupOnce sync.Once
	cgroupSup  cgroupSupport
)

func probeCgroups() *cgroupSupport {
	cgroupOnce.Do(func() { cgroupSup = probe() })
	return &cgroupSup
}

func probe() cgroupSupport {
	sup := cgroupSupport{mode: cgroups.Mode(), v1: map[cgroup1.Name]bool{},
		v1Subs: map[cgroup1.Name]cgroup1.Subsystem{}, v1Own: map[cgroup1.Name]string{}}
	var why []string
	switch sup.mode {
	case cgroups.Unified:
		sup.v2Mount = "/sys/fs/cgroup"
	case cgroups.Hybrid:
		sup.v2Mount = "/sys/fs/cgroup/unified"
	case cgroups.Unavailable:
		sup.why = "no cgroup file system is mounted at /sys/fs/cgroup"
		return sup
	}
	probeName := fmt.Sprintf("procpool-probe-%d", os.Getpid())
	if sup.v2Mount != "" {
		if p, err := cgroup2.NestedGroupPath(""); err == nil {
			dir := filepath.Join(sup.v2Mount, p, probeName)
			if err := os.Mkdir(dir, 0o755); err == nil {
				sup.v2Path = p
				if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
					sup.kill = "cgroup.kill"
				} else {
					why = append(why, "cgroup v2 has no cgroup.kill (Linux 5.14)")
				}
				os.Remove(dir)
				sup.v2Limits = v2CanLimit(filepath.Join(sup.v2Mount, p))
				if !sup.v2Limits && sup.mode == cgroups.Unified {
					why = append(why, fmt.Sprintf("the unified cgroup %s does not delegate the memory, cpu and pids controllers", p))
				}
			} else {
				why = append(why, fmt.Sprintf("cannot create a cgroup under %s: %v", filepath.Join(sup.v2Mount, p), err))
			}
		}
	}
	if sup.mode != cgroups.Unified {
		if subs, err := cgroup1.Default(); err == nil {
			own := cgroup1.NestedPath("")
			for _, s := range subs {
				if p, err := own(s.Name()); err == nil {
					sup.v1Subs[s.Name()], sup.v1Own[s.Name()] = s, p
				}
			}
		}
		for _, n := range []cgroup1.Name{cgroup1.Memory, cgroup1.Cpu, cgroup1.Pids, cgroup1.Freezer} {
			cg, err := cgroup1.New(sup.v1Path(probeName), &specs.LinuxResources{}, cgroup1.WithHierarchy(sup.only(n)))
			if err != nil {
				why = append(why, fmt.Sprintf("cgroup v1 %s: %v", n, err))
				continue
			}
			sup.v1[n] = true
			if n == cgroup1.Memory {
				for _, s := range cg.Subsystems() {
					if _, err := os.Stat(filepath.Join(v1Root(s), "memory.memsw.limit_in_bytes")); err == nil {
						sup.memsw = true
					}
				}
			}
			_ = cg.Delete()
		}
		if sup.kill == "" && sup.v1[cgroup1.Freezer] {
			sup.kill = "freezer"
		}
	}
	sup.why = joinWhy(why)
	sup.sweep()
	return sup
}

// sweep removes the cgroups that hosts which died without cleaning up (a
// SIGKILL) left under this process's own cgroups, killing what is still in
// them: the processes that escaped their worker's end under ContainCgroup
// (package childproc) do not outlive the next host of the cgroup.
func (sup *cgroupSupport) sweep() {
	var dirs []string
	if sup.v2Path != "" {
		dirs = append(dirs, filepath.Join(sup.v2Mount, sup.v2Path))
	}
	for n, own := range sup.v1Own {
		if sup.v1[n] {
			dirs = append(dirs, filepath.Join(v1Root(sup.v1Subs[n]), own))
		}
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			pid, ok := cgroupOwner(e.Name())
			if !ok || !e.IsDir() || processAlive(pid) {
				continue
			}
			stale := filepath.Join(dir, e.Name())
			for range 100 {
				if os.Remove(stale) == nil || !killMembers(stale) {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// cgroupOwner returns the host pid in a cgroup name procpool-<pid>-<n>.
func cgroupOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "procpool-")
	if !ok {
		return 0, false
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(pid)
	return n, err == nil && n > 0
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killMembers kills what is in the cgroup at dir (cgroup.kill where there
// is one) and reports whether it had members.
func killMembers(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil || len(b) == 0 {
		return false
	}
	// A v1 cgroup its host froze to kill it: frozen, they cannot die.
	_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return true
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return true
}

// v2CanLimit reports whether the cgroup at dir can give its children the
// memory, cpu and pids controllers.
func v2CanLimit(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for _, f := range splitFields(string(b)) {
		have[f] = true
	}
	return have["memory"] && have["cpu"] && have["pids"]
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		if r == ' ' || r == '\n' || r == '\t' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

func joinWhy(why []string) string {
	s := ""
	for i, w := range why {
		if i > 0 {
			s += "; "
		}
		s += w
	}
	return s
}

// limitsError says which of s's cgroup limits this machine cannot apply.
func (sup *cgroupSupport) limitsError(s *Sandbox) error {
	if sup.v2Limits {
		return nil
	}
	for _, l := range []struct {
		set  bool
		name string
		ctl  cgroup1.Name
	}{{s.Memory > 0, "Memory", cgroup1.Memory}, {s.CPU > 0, "CPU", cgroup1.Cpu}, {s.Pids > 0, "Pids", cgroup1.Pids}} {
		if l.set && !sup.v1[l.ctl] {
			return fmt.Errorf("%w: %s limit: no usable %s cgroup controller (%s)", ErrUnsupported, l.name, l.ctl, sup.why)
		}
	}
	return nil
}
