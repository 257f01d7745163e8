package actors

// jobQueue is a router's FIFO of accepted jobs waiting for a worker. It also
// takes jobs back at its front (a job whose worker died, to be retried
// first) and removes jobs from its middle (cancelled, or the first that fits
// a worker). It is a ring buffer that grows as needed.
//
// Every change is reported to the slot board (setQueued), so that the
// board's queued count is always the queue's length: that is what keeps
// callers from taking a slot ahead of a queued job.
type jobQueue struct {
	board *slotBoard // told the length after every change; nil in tests
	buf   []*Job
	head  int
	n     int
}

func (q *jobQueue) len() int { return q.n }

func (q *jobQueue) synced() {
	if q.board != nil {
		q.board.setQueued(q.n)
	}
}

func (q *jobQueue) grow() {
	if q.n < len(q.buf) {
		return
	}
	nb := make([]*Job, max(16, 2*len(q.buf)))
	for i := 0; i < q.n; i++ {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

func (q *jobQueue) at(i int) *Job { return q.buf[(q.head+i)%len(q.buf)] }

func (q *jobQueue) pushBack(j *Job) {
	q.grow()
	q.buf[(q.head+q.n)%len(q.buf)] = j
	q.n++
	q.synced()
}

func (q *jobQueue) pushFront(j *Job) {
	q.grow()
	q.head = (q.head - 1 + len(q.buf)) % len(q.buf)
	q.buf[q.head] = j
	q.n++
	q.synced()
}

func (q *jobQueue) peekFront() *Job { return q.buf[q.head] }

func (q *jobQueue) popFront() *Job {
	j := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.synced()
	return j
}

// remove deletes j if it is queued, keeping the others in order.
func (q *jobQueue) remove(j *Job) bool {
	for i := 0; i < q.n; i++ {
		if q.at(i) == j {
			q.removeAt(i)
			return true
		}
	}
	return false
}

// removeFirst removes and returns the first job for which ok is true, nil
// if none.
func (q *jobQueue) removeFirst(ok func(*Job) bool) *Job {
	for i := 0; i < q.n; i++ {
		if j := q.at(i); ok(j) {
			q.removeAt(i)
			return j
		}
	}
	return nil
}

func (q *jobQueue) removeAt(i int) {
	for k := i; k < q.n-1; k++ {
		q.buf[(q.head+k)%len(q.buf)] = q.buf[(q.head+k+1)%len(q.buf)]
	}
	q.buf[(q.head+q.n-1)%len(q.buf)] = nil
	q.n--
	q.synced()
}
