package worker

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestJobTableMatchesModel drives a jobTable with random single ids
// (new, reused once free, or already running), runs of ids above every
// other (some with items left out), lookups and removals by the right job
// or another, and checks each answer against a plain map of id to job.
func TestJobTableMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		tab := newJobTable()
		model := map[uint64]*job{}
		var next uint64 // the host's counter: ids from 0 up
		var seen []uint64
		pick := func() uint64 {
			if len(seen) == 0 || rng.IntN(8) == 0 {
				return uint64(rng.IntN(2000))
			}
			return seen[rng.IntN(len(seen))]
		}
		for range 3000 {
			switch rng.IntN(5) {
			case 0: // a single request: a new id, or any
				id := next
				if rng.IntN(3) == 0 {
					id = pick()
				} else {
					next++
				}
				_, running := model[id]
				require.Equal(t, running, tab.has(id), "has %d", id)
				if !running {
					j := new(job)
					tab.add(id, j)
					model[id] = j
					seen = append(seen, id)
				}
			case 1: // a batch in a row, above every id so far
				first := next
				for _, id := range seen {
					first = max(first, id+1)
				}
				require.True(t, tab.above(first))
				n := 1 + rng.IntN(50)
				jobs := make([]*job, n)
				for k := range jobs {
					if rng.IntN(6) != 0 { // else refused: no job
						jobs[k] = new(job)
						model[first+uint64(k)] = jobs[k]
					}
					seen = append(seen, first+uint64(k))
				}
				tab.addRun(first, jobs)
				next = first + uint64(n)
			case 2, 3: // remove, by its job or another
				id := pick()
				j := model[id]
				if j == nil || rng.IntN(4) == 0 {
					j = new(job)
				}
				tab.remove(id, j)
				if model[id] == j {
					delete(model, id)
				}
			case 4:
				id := pick()
				require.Equal(t, model[id], tab.get(id), "get %d", id)
			}
		}
		for id, j := range model {
			require.Equal(t, j, tab.get(id), "get %d at the end", id)
		}
	}
}
