package telemetry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsListEveryInstrument: docs/metrics.md has one row per
// instrument, with its kind, unit and attributes as Specs says, and no
// row for an instrument that does not exist.
func TestDocsListEveryInstrument(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{} // instrument name → its row's cells
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 { // the instruments table's rows have five cells
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[strings.Trim(cells[0], "`")] = cells
	}
	for _, s := range Specs() {
		cells, ok := rows[s.Name]
		if !ok {
			t.Errorf("docs/metrics.md has no row for %s", s.Name)
			continue
		}
		delete(rows, s.Name)
		if cells[1] != s.Kind {
			t.Errorf("%s: the docs say kind %q, it is %q", s.Name, cells[1], s.Kind)
		}
		if cells[2] != "`"+s.Unit+"`" {
			t.Errorf("%s: the docs say unit %s, it is %q", s.Name, cells[2], s.Unit)
		}
		var want []string
		for _, k := range s.Attributes {
			want = append(want, "`"+string(k)+"`")
		}
		if got := strings.Join(want, ", "); cells[3] != got {
			t.Errorf("%s: the docs say attributes %s, they are %s", s.Name, cells[3], got)
		}
		if cells[4] == "" {
			t.Errorf("%s: no meaning in the docs", s.Name)
		}
	}
	for name := range rows {
		t.Errorf("docs/metrics.md lists %s, which is not an instrument", name)
	}
}
