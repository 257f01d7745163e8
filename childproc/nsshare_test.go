package childproc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/sandbox"
)

// startNamedProbe is startProbe with the worker named name (the job type,
// for the namespaces its workers share).
func startNamedProbe(t *testing.T, name string, sb sandbox.Sandbox) *prober {
	t.Helper()
	requireSupported(t, sb)
	spec := selfSpec(t, "probe")
	spec.Name, spec.Sandbox = name, sb
	p := start(t, spec)
	return &prober{t: t, p: p, lines: newLineReader(t, p)}
}

// TestJobTypeWorkersShareNamespaces: two workers of one job type (the same
// name and sandbox) are in the same network, IPC, UTS and user namespaces
// but each in a PID and a mount namespace of its own, in which it sees
// only its own processes; a worker of another job type, and a worker with
// Namespaces.PerWorker, have namespaces of their own. A worker in the
// shared user namespace cannot bring the shared network's loopback up
// (the network namespace belongs to the host's user namespace), nor can
// it without a user namespace as another user.
func TestJobTypeWorkersShareNamespaces(t *testing.T) {
	for _, mode := range startModes {
		t.Run(mode, func(t *testing.T) {
			inMode(t, mode)
			clean(t)
			traced := mode == "traced"
			sb := sandbox.Sandbox{
				Credential: &sandbox.Credential{UID: 65534, GID: 65534},
				Namespaces: sandbox.Namespaces{Network: true, Mount: true, IPC: true, UTS: true, User: traced},
			}
			shared := []string{"net", "ipc", "uts"}
			if traced {
				shared = append(shared, "user")
			}
			a, b := startNamedProbe(t, "echo", sb), startNamedProbe(t, "echo", sb)
			for _, kind := range shared {
				host, err := os.Readlink("/proc/self/ns/" + kind)
				require.NoError(t, err)
				na := a.ask("ns " + kind)
				assert.NotEqual(t, host, na, "not the host's %s namespace", kind)
				assert.Equal(t, na, b.ask("ns "+kind), "one %s namespace for the job type's workers", kind)
			}
			for _, kind := range []string{"pid", "mnt"} {
				assert.NotEqual(t, a.ask("ns "+kind), b.ask("ns "+kind), "a %s namespace of each worker's own", kind)
			}
			for _, pr := range []*prober{a, b} {
				assert.Equal(t, childproc.ContainPIDNamespace, pr.p.Containment())
				nspid := pr.ask("status NSpid")
				assert.Equal(t, "1 "+nspid, pr.ask("procs"), "only its init and itself")
				assert.Equal(t, "lo:down", pr.ask("ifaces"))
				assert.Equal(t, "error: EPERM", pr.ask("loup"), "the shared loopback stays down")
			}

			other := startNamedProbe(t, "other", sb)
			perWorker := sb
			perWorker.Namespaces.PerWorker = true
			own1, own2 := startNamedProbe(t, "echo", perWorker), startNamedProbe(t, "echo", perWorker)
			net := a.ask("ns net")
			assert.NotEqual(t, net, other.ask("ns net"), "another job type's workers share another network")
			assert.NotEqual(t, net, own1.ask("ns net"), "PerWorker: a network of its own")
			assert.NotEqual(t, own1.ask("ns net"), own2.ask("ns net"), "PerWorker: a network of each worker's own")
			for _, pr := range []*prober{a, b, other, own1, own2} {
				exit := pr.p.Stop(context.Background(), waitLong)
				assert.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)
			}
			childproc.ReleaseSpares()
		})
	}
}

// TestSharedNamespacesGoWithTheLastWorker: the namespaces a job type's
// workers share outlive a worker while another runs (a restarted worker
// joins them again), and are gone once the last has ended: at once with
// ReleaseSpares, a moment later without. Gone means that no descriptor of
// the host and no process refers to the network namespace any more, and
// that no PID namespace init is left.
func TestSharedNamespacesGoWithTheLastWorker(t *testing.T) {
	for _, release := range []bool{true, false} {
		name := "linger"
		if release {
			name = "ReleaseSpares"
		}
		t.Run(name, func(t *testing.T) {
			clean(t)
			sb := sandbox.Sandbox{Namespaces: sandbox.Namespaces{Network: true, IPC: true}}
			a, b := startNamedProbe(t, "echo", sb), startNamedProbe(t, "echo", sb)
			net := a.ask("ns net")
			require.Equal(t, net, b.ask("ns net"))
			assert.Equal(t, "ok", a.ask("loup"), "a root worker without a user namespace can bring it up")
			exit := a.p.Stop(context.Background(), waitLong)
			require.True(t, exit.Success(), "exit %v", exit)
			assert.NotEmpty(t, holdersOf(t, net), "held while a worker of the job type runs")
			c := startNamedProbe(t, "echo", sb)
			assert.Equal(t, net, c.ask("ns net"), "a worker started later joins the same network")
			assert.Equal(t, "lo:up", c.ask("ifaces"), "and finds it as its sibling left it")
			for _, pr := range []*prober{b, c} {
				exit := pr.p.Stop(context.Background(), waitLong)
				require.True(t, exit.Success(), "exit %v", exit)
			}
			if release {
				childproc.ReleaseSpares()
				assert.Empty(t, holdersOf(t, net), "ReleaseSpares ends the shared namespaces at once")
			} else {
				deadline := time.Now().Add(waitGone)
				for len(holdersOf(t, net)) > 0 && time.Now().Before(deadline) {
					time.Sleep(waitPoll)
				}
				assert.Empty(t, holdersOf(t, net), "the shared namespaces go a moment after the last worker")
			}
			assert.Empty(t, proctest.NamespaceInits(), "no init left")
		})
	}
}

// holdersOf lists what refers to namespace ns ("net:[4026532...]"): the
// host's descriptors of it (/proc/self/fd) and the processes in it
// (/proc/<pid>/ns/net).
func holdersOf(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	fds, err := filepath.Glob("/proc/self/fd/*")
	require.NoError(t, err)
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == ns {
			out = append(out, fd)
		}
	}
	procs, err := filepath.Glob("/proc/[0-9]*/ns/net")
	require.NoError(t, err)
	for _, p := range procs {
		if l, err := os.Readlink(p); err == nil && l == ns {
			out = append(out, p)
		}
	}
	return out
}

// TestReleaseSparesByName: ReleaseSpares with names ends what was kept for
// those names only; another job type's shared namespaces and spare init
// stay for its next worker, until released in turn.
func TestReleaseSparesByName(t *testing.T) {
	clean(t)
	sb := sandbox.Sandbox{Namespaces: sandbox.Namespaces{Network: true, IPC: true}}
	a, b := startNamedProbe(t, "alpha", sb), startNamedProbe(t, "beta", sb)
	netA, netB := a.ask("ns net"), b.ask("ns net")
	require.NotEqual(t, netA, netB, "job types do not share")
	for _, pr := range []*prober{a, b} {
		exit := pr.p.Stop(context.Background(), waitLong)
		require.True(t, exit.Success(), "exit %v", exit)
	}
	childproc.ReleaseSpares("alpha")
	assert.Empty(t, holdersOf(t, netA), "alpha's namespaces end")
	assert.NotEmpty(t, holdersOf(t, netB), "beta's stay")
	childproc.ReleaseSpares("beta")
	assert.Empty(t, holdersOf(t, netB), "then beta's")
	assert.Empty(t, proctest.NamespaceInits(), "no init left")
}
