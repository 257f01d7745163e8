package childproc

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/sandbox"
)

// TestInitSlotsGoWithTheirSpares: a name's slot in the init pool goes
// when its spare does, at ReleaseSpares or after the linger, whether the
// spare was ready or still being made then; a host that runs many names
// in turn does not keep a slot for each. (Slots were never removed.)
func TestInitSlotsGoWithTheirSpares(t *testing.T) {
	if !probeHost().pidns {
		t.Skipf("no PID namespaces here: %s", probeHost().why)
	}
	sb := sandbox.Sandbox{}
	for _, c := range []struct {
		name    string
		release func(p *initPool)
	}{
		{"release", func(p *initPool) { p.releaseUnused(func(string) bool { return true }) }},
		{"linger", func(*initPool) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &initPool{slots: map[initKey]*initSlot{}}
			slots := func() int {
				p.mu.Lock()
				defer p.mu.Unlock()
				return len(p.slots)
			}
			for i, name := range []string{"one", "two", "three"} {
				p.started(name, &sb)
				if i == 0 { // its spare ready before its end
					require.True(t, proctest.WaitFor(10*time.Second, func() bool {
						p.mu.Lock()
						defer p.mu.Unlock()
						return p.slots[initKey{name, shapeOf(&sb)}].spare != nil
					}), "the spare is made")
				}
				p.ended(name, shapeOf(&sb))
			}
			c.release(p)
			assert.True(t, proctest.WaitFor(10*time.Second, func() bool { return slots() == 0 }), "%d slots left", slots())
			assert.True(t, proctest.WaitFor(10*time.Second, func() bool { return len(proctest.NamespaceInits()) == 0 }),
				"no init left: %v", proctest.NamespaceInits())
		})
	}
}
