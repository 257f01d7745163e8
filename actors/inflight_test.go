package actors

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/codec"
)

// TestInflightMatchesModel drives the in-flight table with random adds
// (single jobs and Map dispatches), takes, batch takes, restores, drops
// and lookups, and checks every answer against a plain map of id to
// entry: an id names what it was given until it is taken, and nothing
// after; a restored id names it again; takeAll returns each job left
// once, in dispatch order.
func TestInflightMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tab := newInflight()
		model := map[uint64]entry{}
		var order []*Job // jobs by first dispatch
		var ids []uint64 // every id given, taken or not
		pick := func() uint64 {
			if len(ids) == 0 || rng.IntN(10) == 0 {
				return uint64(rng.IntN(1000)) + 1 // maybe never given
			}
			return ids[rng.IntN(len(ids))]
		}
		for range 2000 {
			switch op := rng.IntN(7); op {
			case 0: // a single job
				j := &Job{}
				id, ok := tab.add(j, nil)
				require.True(t, ok)
				model[id] = entry{j: j, item: -1}
				ids = append(ids, id)
				order = append(order, j)
			case 1: // a Map dispatch of some of a batch's items
				n := 1 + rng.IntN(40)
				j := &Job{}
				j.batch = newBatch(j, make([][]byte, n+5), nil)
				items := rng.Perm(n + 5)[:n]
				got, ok := tab.addItems(j, nil, items)
				require.True(t, ok)
				require.Len(t, got, n)
				for k, id := range got {
					require.Equal(t, got[0]+uint64(k), id, "a dispatch's ids are in a row")
					model[id] = entry{j: j, item: items[k]}
				}
				ids = append(ids, got...)
				order = append(order, j)
			case 2: // take
				id := pick()
				e, ok := tab.take(id)
				want, wantOK := model[id]
				require.Equal(t, wantOK, ok, "take %d", id)
				require.Equal(t, want, e)
				delete(model, id)
			case 3: // a batch response: take each, then maybe restore the rest
				ms := make([]codec.Message, 1+rng.IntN(30))
				base := pick()
				for i := range ms {
					ms[i].ID = base + uint64(i)
				}
				found := tab.takeEach(ms, nil)
				require.Len(t, found, len(ms))
				for i := range ms {
					want, wantOK := model[ms[i].ID]
					require.Equal(t, wantOK, found[i].ok, "takeEach %d", ms[i].ID)
					require.Equal(t, want, found[i].e)
					delete(model, ms[i].ID)
				}
				if rng.IntN(3) == 0 {
					from := rng.IntN(len(ms))
					tab.restore(ms[from:], found[from:])
					for i := from; i < len(ms); i++ {
						if found[i].ok {
							model[ms[i].ID] = found[i].e
						}
					}
				}
			case 4: // drop, by the right job or another
				id := pick()
				j := model[id].j
				if rng.IntN(4) == 0 {
					j = &Job{}
				}
				e, ok := tab.drop(id, j)
				want, wantOK := model[id]
				wantOK = wantOK && want.j == j
				require.Equal(t, wantOK, ok, "drop %d", id)
				if wantOK {
					require.Equal(t, want, e)
					delete(model, id)
				}
			case 5: // holds and lookup
				id := pick()
				want, wantOK := model[id]
				e, ok := tab.lookup(id)
				require.Equal(t, wantOK, ok, "lookup %d", id)
				require.Equal(t, want, e)
				require.Equal(t, wantOK, tab.holds(id, want.j))
				require.False(t, tab.holds(id, &Job{}))
			case 6:
				require.Equal(t, len(model), tab.len())
			}
		}
		require.Equal(t, len(model), tab.len())
		var want []*Job
		for _, j := range order {
			for _, e := range model {
				if e.j == j && !slices.Contains(want, j) {
					want = append(want, j)
				}
			}
		}
		require.Equal(t, len(model), tab.close())
		require.Equal(t, want, tab.takeAll(), "seed %d", seed)
		require.Zero(t, tab.len())
		_, ok := tab.add(&Job{}, nil)
		require.False(t, ok, "a closed table takes no job")
	}
}
