package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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

// v1Root is the mount point of a v1 hierarchy.
func v1Root(s cgroup1.Subsystem) string {
	if p, ok := s.(interface{ Path(string) string }); ok {
		return p.Path("/")
	}
	return ""
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
