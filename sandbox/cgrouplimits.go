package sandbox

import (
	"fmt"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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
