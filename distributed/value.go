package distributed

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool"
)

// CallValue runs a VALUE job through p, as procpool.CallValue does on a
// local router: in is msgpack-encoded, the worker's typed handler runs it
// on some node, and its result is decoded into Out. A result that does not
// decode into Out fails with an error matching procpool.ErrBadResult.
func CallValue[Out, In any](ctx context.Context, p *Producer, jobType string, in In) (Out, error) {
	j, err := SubmitValue[Out](ctx, p, jobType, in)
	if err != nil {
		var zero Out
		return zero, err
	}
	return j.Wait(ctx)
}

// SubmitValue submits a VALUE job and returns a future for its typed
// result.
func SubmitValue[Out, In any](ctx context.Context, p *Producer, jobType string, in In) (*ValueJob[Out], error) {
	payload, err := msgpack.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("distributed: encode %T: %w", in, err)
	}
	j, err := p.Submit(ctx, jobType, procpool.Value, payload)
	if err != nil {
		return nil, err
	}
	return &ValueJob[Out]{Job: j}, nil
}

// ValueJob is a submitted VALUE job whose result decodes into Out.
type ValueJob[Out any] struct {
	*Job
}

// Wait waits for the job (see Job.Wait) and decodes its result.
func (j *ValueJob[Out]) Wait(ctx context.Context) (Out, error) {
	var out Out
	res, err := j.Job.Wait(ctx)
	if err != nil {
		return out, err
	}
	if err := msgpack.Unmarshal(res, &out); err != nil {
		return out, fmt.Errorf("%w into %T: %v", procpool.ErrBadResult, out, err)
	}
	return out, nil
}
