// Package sandbox describes, checks and prepares the controls a worker
// process runs under: its user, a cgroup of its own with memory, CPU and
// task limits, namespaces, no_new_privs, a seccomp filter and Landlock
// file system rules. A Sandbox is a plain value (procpool.JobType has
// one); package childproc applies it to each worker it starts, before the
// worker runs any code, whatever language the worker is written in.
//
// This package holds what can be said and done about a Sandbox from the
// host: Validate checks its shape, Check asks whether this machine can
// apply it (and says which control it cannot, and why), Seccomp.Program
// assembles its filter (with github.com/elastic/go-seccomp-bpf),
// Landlock.Ruleset builds its rules (with
// github.com/landlock-lsm/go-landlock) and NewCgroup makes a worker's
// cgroup (with github.com/containerd/cgroups, v1 or v2). How the controls
// reach the process is childproc's business; docs/isolation.md describes
// both, what each control protects against, and what it needs.
package sandbox
