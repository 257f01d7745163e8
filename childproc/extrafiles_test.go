package childproc_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc"
)

// newMemfd creates a memfd of size bytes, closed at the end of the test
// (closing it again is harmless).
func newMemfd(t *testing.T, name string, size int64) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	require.NoError(t, err, "memfd_create")
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, f.Truncate(size))
	return f
}

func TestExtraFiles(t *testing.T) {
	for _, mode := range []string{"plain", "controls"} { // controls: started under ptrace
		t.Run(mode, func(t *testing.T) {
			clean(t)
			mem := newMemfd(t, "childproc-extra", 0)
			_, err := mem.WriteAt([]byte("from a memfd"), 0)
			require.NoError(t, err)
			tmp, err := os.CreateTemp(t.TempDir(), "extra")
			require.NoError(t, err)
			t.Cleanup(func() { tmp.Close() })
			_, err = tmp.WriteString("from a temp file")
			require.NoError(t, err)

			spec := selfSpec(t, "fds", "5", "6")
			spec.ExtraFiles = []*os.File{mem, tmp}
			if mode == "controls" {
				nice := 1
				spec.Nice = &nice
			}
			p := start(t, spec)

			// Start has not closed the caller's files; closing them now
			// leaves the child's copies alone.
			for _, f := range spec.ExtraFiles {
				_, err := f.Stat()
				require.NoError(t, err, "Start closed %s", f.Name())
				require.NoError(t, f.Close())
			}
			_, err = p.Input().Write([]byte{1})
			require.NoError(t, err)

			lines := newLineReader(t, p)
			var views []fdView
			for range 2 {
				var v fdView
				require.NoError(t, json.Unmarshal([]byte(lines.next()), &v))
				views = append(views, v)
			}
			assert.Equal(t, []fdView{
				{FD: 5, Target: "/memfd:childproc-extra (deleted)", Content: "from a memfd"},
				{FD: 6, Target: tmp.Name(), Content: "from a temp file"},
			}, views)

			// The protocol pipes are where they were.
			_, err = p.Input().Write([]byte("still echoing\n"))
			require.NoError(t, err)
			assert.Equal(t, "still echoing", lines.next())
			exit := p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v", exit)
		})
	}
}

func TestStartErrorLeavesExtraFilesOpen(t *testing.T) {
	clean(t)
	mem := newMemfd(t, "childproc-extra", 4096)
	spec := selfSpec(t, "echo")
	spec.Dir = "/nonexistent/dir"
	spec.ExtraFiles = []*os.File{mem}
	p, err := childproc.Start(spec)
	require.Error(t, err)
	assert.Nil(t, p)
	_, err = mem.Stat()
	assert.NoError(t, err, "Start closed an extra file")
}
