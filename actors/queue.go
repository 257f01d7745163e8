package actors

// jobQueue is a FIFO of jobs that also takes jobs back at its front (a job
// whose worker died, to be retried first) and removes a cancelled job from
// its middle. It is a ring buffer that grows as needed.
type jobQueue struct {
	buf  []*Job
	head int
	n    int
}

func (q *jobQueue) len() int { return q.n }

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

func (q *jobQueue) pushBack(j *Job) {
	q.grow()
	q.buf[(q.head+q.n)%len(q.buf)] = j
	q.n++
}

func (q *jobQueue) pushFront(j *Job) {
	q.grow()
	q.head = (q.head - 1 + len(q.buf)) % len(q.buf)
	q.buf[q.head] = j
	q.n++
}

func (q *jobQueue) peekFront() *Job { return q.buf[q.head] }

func (q *jobQueue) popFront() *Job {
	j := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return j
}

// remove deletes j if it is queued, keeping the others in order.
func (q *jobQueue) remove(j *Job) bool {
	for i := 0; i < q.n; i++ {
		if q.buf[(q.head+i)%len(q.buf)] != j {
			continue
		}
		for k := i; k < q.n-1; k++ {
			q.buf[(q.head+k)%len(q.buf)] = q.buf[(q.head+k+1)%len(q.buf)]
		}
		q.buf[(q.head+q.n-1)%len(q.buf)] = nil
		q.n--
		return true
	}
	return false
}
