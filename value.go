package procpool

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
)

// CallValue runs a VALUE job: in is msgpack-encoded, sent to the worker's
// typed handler, and its result decoded into Out. A result that is not
// exactly one msgpack value, or that does not decode into Out, fails with
// an error matching ErrBadResult.
func CallValue[Out, In any](ctx context.Context, r *Router, in In) (Out, error) {
	var out Out
	payload, err := msgpack.Marshal(in)
	if err != nil {
		return out, fmt.Errorf("procpool: encode %T: %w", in, err)
	}
	res, err := r.Call(ctx, Value, payload)
	if err != nil {
		return out, err
	}
	return decodeValue[Out](res)
}

// SubmitValue accepts a VALUE job and returns a future for its typed result.
func SubmitValue[Out, In any](ctx context.Context, r *Router, in In) (*ValueJob[Out], error) {
	payload, err := msgpack.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("procpool: encode %T: %w", in, err)
	}
	j, err := r.Submit(ctx, Value, payload)
	if err != nil {
		return nil, err
	}
	return &ValueJob[Out]{Job: j}, nil
}

// ValueJob is an accepted VALUE job whose result decodes into Out.
type ValueJob[Out any] struct {
	*Job
}

// Wait waits for the job (cancelling it if ctx ends first) and decodes its
// result.
func (j *ValueJob[Out]) Wait(ctx context.Context) (Out, error) {
	res, err := j.Job.Wait(ctx)
	if err != nil {
		var zero Out
		return zero, err
	}
	return decodeValue[Out](res)
}

// decodeValue decodes res, which must hold exactly one msgpack value, into
// an Out.
func decodeValue[Out any](res []byte) (Out, error) {
	var out Out
	if err := codec.CheckValue(res); err != nil {
		return out, fmt.Errorf("%w: %w", ErrBadResult, err)
	}
	if err := msgpack.Unmarshal(res, &out); err != nil {
		return out, fmt.Errorf("%w into %T: %w", ErrBadResult, out, err)
	}
	return out, nil
}

// MapValue runs a VALUE job for each value of inputs, as Router.Map does,
// and yields each result decoded into an Out, or its error, in input order.
// A value that cannot be encoded gets its encoding error.
func MapValue[Out, In any](ctx context.Context, r *Router, inputs iter.Seq[In]) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		var encErrs sync.Map // index → encoding error
		encoded := func(yield func([]byte) bool) {
			i := 0
			for in := range inputs {
				p, err := msgpack.Marshal(in)
				if err != nil {
					encErrs.Store(i, fmt.Errorf("procpool: encode %T: %w", in, err))
					p = nil // refused as ErrBadPayload; its error is replaced below
				}
				i++
				if !yield(p) {
					return
				}
			}
		}
		i := 0
		for res, err := range r.Map(ctx, Value, encoded) {
			var out Out
			if e, ok := encErrs.LoadAndDelete(i); ok {
				err = e.(error)
			} else if err == nil {
				out, err = decodeValue[Out](res)
			}
			i++
			if !yield(out, err) {
				return
			}
		}
	}
}
