package childproc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
)

// statusRunning is /proc/<pid>/status of a running process (Linux 6.18),
// cut after the memory lines.
const statusRunning = `Name:	cat
Umask:	0022
State:	R (running)
Tgid:	5390
Ngid:	0
Pid:	5390
PPid:	5387
TracerPid:	0
Uid:	0	0	0	0
Gid:	0	0	0	0
FDSize:	256
Groups:	 
NStgid:	5390
NSpid:	5390
NSpgid:	5387
NSsid:	4383
Kthread:	0
VmPeak:	    3060 kB
VmSize:	    3060 kB
VmLck:	       0 kB
VmPin:	       0 kB
VmHWM:	    1740 kB
VmRSS:	    1740 kB
RssAnon:	     112 kB
RssFile:	    1628 kB
RssShmem:	       0 kB
VmData:	     360 kB
VmStk:	     132 kB
VmExe:	      20 kB
VmLib:	    1528 kB
Threads:	1
`

// statusZombie is the status of a zombie: it has no memory lines.
const statusZombie = `Name:	sleep
State:	Z (zombie)
Tgid:	5415
Pid:	5415
PPid:	5413
FDSize:	0
Threads:	1
SigQ:	0/96365
`

func TestParseMemory(t *testing.T) {
	good := childproc.Memory{RSS: 1740 << 10, Anon: 112 << 10, File: 1628 << 10, Shmem: 0}
	replace := func(old, new string) string {
		require.Contains(t, statusRunning, old)
		return strings.Replace(statusRunning, old, new, 1)
	}
	cases := []struct {
		name    string
		status  string
		want    childproc.Memory
		wantErr string // substring; "" means no error
	}{
		{"running", statusRunning, good, ""},
		{"no final newline", strings.TrimSuffix(replace("Threads:\t1\n", ""), "\n"), good, ""},
		{"only the memory lines", "RssShmem:\t8192 kB\nRssFile:\t1 kB\nRssAnon:\t2 kB\nVmRSS:\t8195 kB\n",
			childproc.Memory{RSS: 8195 << 10, Anon: 2 << 10, File: 1 << 10, Shmem: 8 << 20}, ""},
		{"spaces, no tab", replace("RssShmem:\t       0 kB", "RssShmem: 5 kB"),
			childproc.Memory{RSS: good.RSS, Anon: good.Anon, File: good.File, Shmem: 5 << 10}, ""},
		{"largest value", replace("VmRSS:\t    1740 kB", "VmRSS:\t18014398509481983 kB"),
			childproc.Memory{RSS: 1<<64 - 1024, Anon: good.Anon, File: good.File}, ""},
		{"zombie", statusZombie, childproc.Memory{}, os.ErrProcessDone.Error()},
		{"dead", strings.Replace(statusZombie, "Z (zombie)", "X (dead)", 1), childproc.Memory{}, os.ErrProcessDone.Error()},

		{"empty", "", childproc.Memory{}, "no VmRSS line"},
		{"no RssShmem (kernel < 4.5)", replace("RssShmem:\t       0 kB\n", ""), childproc.Memory{}, "no RssShmem line"},
		{"no RssAnon", replace("RssAnon:", "RssAnonymous:"), childproc.Memory{}, "no RssAnon line"},
		{"not a number", replace("1628 kB", "16x8 kB"), childproc.Memory{}, `RssFile value "\t    16x8 kB" is not a size in kB`},
		{"negative", replace("    112 kB", "-112 kB"), childproc.Memory{}, "RssAnon value"},
		{"no unit", replace("    1740 kB\nRssAnon", "    1740\nRssAnon"), childproc.Memory{}, "VmRSS value"},
		{"other unit", replace("    1740 kB\nRssAnon", "    1740 MB\nRssAnon"), childproc.Memory{}, "VmRSS value"},
		{"unit only", replace("    1740 kB\nRssAnon", " kB\nRssAnon"), childproc.Memory{}, "VmRSS value"},
		{"empty value", replace("    1740 kB\nRssAnon", "\nRssAnon"), childproc.Memory{}, "VmRSS value"},
		{"trailing junk", replace("    1740 kB\nRssAnon", "    1740 kB junk\nRssAnon"), childproc.Memory{}, "VmRSS value"},
		{"overflow", replace("VmRSS:\t    1740 kB", "VmRSS:\t18014398509481984 kB"), childproc.Memory{}, "VmRSS value"},
		{"huge", replace("VmRSS:\t    1740 kB", "VmRSS:\t99999999999999999999999 kB"), childproc.Memory{}, "VmRSS value"},
		{"cut mid-line", statusRunning[:strings.Index(statusRunning, "RssFile:")+10], childproc.Memory{}, "RssFile value"},
		{"binary junk", "\x00\xff:\n:\n\n::::\nVmRSS\x00:1 kB", childproc.Memory{}, "no VmRSS line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := childproc.ParseMemory([]byte(c.status))
			if c.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, c.want, m)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.wantErr)
			assert.Zero(t, m)
		})
	}
	_, err := childproc.ParseMemory([]byte(statusZombie))
	assert.ErrorIs(t, err, os.ErrProcessDone)
}

func TestParseMemoryDoesNotAllocate(t *testing.T) {
	b := []byte(statusRunning)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := childproc.ParseMemory(b); err != nil {
			panic(err)
		}
	})
	assert.Zero(t, allocs)
}

func FuzzParseMemory(f *testing.F) {
	f.Add([]byte(statusRunning))
	f.Add([]byte(statusZombie))
	f.Add([]byte("VmRSS:\t1 kB\nRssAnon:\t1 kB\nRssFile:\t0 kB\nRssShmem:\t0 kB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := childproc.ParseMemory(b)
		if err != nil {
			assert.Zero(t, m)
			return
		}
		for _, v := range []uint64{m.RSS, m.Anon, m.File, m.Shmem} {
			assert.Zero(t, v%1024, "%+v is not in whole kB", m)
		}
	})
}

func TestReadProcFileGrowsItsBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	content := []byte(strings.Repeat("0123456789abcdef", 1000))
	require.NoError(t, os.WriteFile(path, content, 0o600))
	for _, size := range []int{0, 16, len(content), 2 * len(content)} {
		got, err := childproc.ReadProcFile(path, make([]byte, 0, size))
		require.NoError(t, err)
		assert.Equal(t, content, got, "buffer of %d", size)
	}
	_, err := childproc.ReadProcFile(filepath.Join(t.TempDir(), "missing"), nil)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestMemory(t *testing.T) {
	clean(t)
	const size = 8 << 20
	shm := newMemfd(t, "childproc-shm", size)
	spec := selfSpec(t, "shm")
	spec.ExtraFiles = []*os.File{shm}
	p := start(t, spec)
	require.NoError(t, shm.Close()) // the child has its own copy

	lines := newLineReader(t, p)
	require.Equal(t, "ready", lines.next())
	before, err := p.Memory()
	require.NoError(t, err)
	t.Logf("before: %+v", before)
	assert.Positive(t, before.Anon)
	assert.Positive(t, before.File, "the binary is mapped")
	assert.Less(t, before.Shmem, uint64(size))
	assert.Equal(t, before.RSS, before.Anon+before.File+before.Shmem, "VmRSS is the sum of the others")

	_, err = p.Input().Write([]byte{1})
	require.NoError(t, err)
	require.Equal(t, "done", lines.next())
	after, err := p.Memory()
	require.NoError(t, err)
	t.Logf("after: %+v", after)
	assert.GreaterOrEqual(t, after.Shmem, before.Shmem+size, "the mapped memfd is shared memory")
	assert.Less(t, after.Anon, before.Anon+size/2, "the mapped memfd is not anonymous memory")
	assert.Equal(t, after.RSS, after.Anon+after.File+after.Shmem, "VmRSS is the sum of the others")
	assert.GreaterOrEqual(t, after.RSS, before.RSS+size)

	// It is cheap enough for every heartbeat.
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := p.Memory(); err != nil {
			panic(err)
		}
	})
	assert.LessOrEqual(t, allocs, 3.0, "allocations per Memory call") // 1, or 2 under -race

	exit := p.Stop(context.Background(), waitLong)
	assert.True(t, exit.Success(), "exit %v", exit)
	_, err = p.Memory()
	assert.ErrorIs(t, err, os.ErrProcessDone)
}
