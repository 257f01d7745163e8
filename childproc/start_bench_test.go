package childproc_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/sandbox"
)

// BenchmarkStart measures one start and stop of /bin/true: os/exec alone
// (the floor), childproc traced (the default: containment, the descriptor
// rule), through the re-exec trampoline, and with a sandbox of every
// control. The ratios to the floor are what docs/isolation.md quotes.
func BenchmarkStart(b *testing.B) {
	const program = "/bin/true"
	full := sandbox.Sandbox{
		Credential: &sandbox.Credential{UID: 65534, GID: 65534},
		Memory:     256 << 20, CPU: 1, Pids: 64,
		Namespaces: sandbox.Namespaces{User: true, Network: true, PID: true, Mount: true, IPC: true, UTS: true},
		NoNewPrivs: true,
		Seccomp:    &sandbox.Seccomp{},
		Landlock:   &sandbox.Landlock{ReadOnly: []string{"/usr", "/lib", "/lib64", "/etc"}},
	}
	if err := full.Check(); err != nil {
		full = sandbox.Sandbox{}
	}
	cycle := func(b *testing.B, spec childproc.Spec) {
		for b.Loop() {
			p, err := childproc.Start(spec)
			if err != nil {
				b.Fatal(err)
			}
			if exit := p.Stop(context.Background(), 10*time.Second); !exit.Success() {
				b.Fatal(exit)
			}
		}
	}
	b.Run("os-exec", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command(program).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("traced", func(b *testing.B) { cycle(b, childproc.Spec{Path: program}) })
	b.Run("trampoline", func(b *testing.B) {
		defer childproc.DisablePtraceForTest()()
		cycle(b, childproc.Spec{Path: program})
	})
	b.Run("sandboxed", func(b *testing.B) {
		if full.IsZero() {
			b.Skip("this machine cannot apply every control")
		}
		cycle(b, childproc.Spec{Path: program, Sandbox: full})
	})
	// Each part of the sandbox alone.
	for _, part := range []struct {
		name string
		sb   sandbox.Sandbox
	}{
		{"cgroup-limits", sandbox.Sandbox{Memory: full.Memory, CPU: full.CPU, Pids: full.Pids}},
		{"pid-namespace", sandbox.Sandbox{Namespaces: sandbox.Namespaces{PID: true}}},
		{"network-namespace", sandbox.Sandbox{Namespaces: sandbox.Namespaces{Network: true}}},
		{"user-namespace", sandbox.Sandbox{Credential: full.Credential, Namespaces: sandbox.Namespaces{User: true}}},
		{"credential", sandbox.Sandbox{Credential: full.Credential}},
		{"seccomp", sandbox.Sandbox{Seccomp: full.Seccomp}},
		{"landlock", sandbox.Sandbox{Landlock: full.Landlock}},
	} {
		b.Run("only-"+part.name, func(b *testing.B) {
			if full.IsZero() {
				b.Skip("this machine cannot apply every control")
			}
			cycle(b, childproc.Spec{Path: program, Sandbox: part.sb})
		})
	}
	b.Run("sandboxed-trampoline", func(b *testing.B) {
		if full.IsZero() {
			b.Skip("this machine cannot apply every control")
		}
		defer childproc.DisablePtraceForTest()()
		sb := full
		sb.Namespaces.User = false // the trampoline cannot join a user namespace in a PID namespace
		cycle(b, childproc.Spec{Path: program, Sandbox: sb})
	})
}
