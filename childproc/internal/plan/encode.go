package plan

import "encoding/binary"

// Encoder appends values to a byte slice, for the trampoline's
// configuration: unsigned varints, length-prefixed bytes and strings.
type Encoder struct {
	B []byte
}

// Uint appends v.
func (e *Encoder) Uint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// Bytes appends b with its length.
func (e *Encoder) Bytes(b []byte) {
	e.Uint(uint64(len(b)))
	e.B = append(e.B, b...)
}

// String appends s with its length.
func (e *Encoder) String(s string) {
	e.Uint(uint64(len(s)))
	e.B = append(e.B, s...)
}

// Strings appends ss with their count.
func (e *Encoder) Strings(ss []string) {
	e.Uint(uint64(len(ss)))
	for _, s := range ss {
		e.String(s)
	}
}

// Plan appends p (nil is the empty plan).
func (e *Encoder) Plan(p *Plan) {
	if p == nil {
		p = &Plan{}
	}
	e.Uint(uint64(len(p.Steps)))
	for _, s := range p.Steps {
		e.String(s.Name)
		e.Uint(uint64(s.NR))
		for _, a := range s.Args {
			e.Uint(uint64(a.Val))
			e.Uint(uint64(a.Blob))
		}
	}
	e.Uint(uint64(len(p.Blobs)))
	for _, b := range p.Blobs {
		e.Bytes(b)
	}
	e.Uint(uint64(len(p.Relocs)))
	for _, r := range p.Relocs {
		e.Uint(uint64(r.Blob))
		e.Uint(uint64(r.Offset))
		e.Uint(uint64(r.Target))
	}
}

// Decoder reads what an Encoder wrote. The first error sticks: later
// reads return zero values, and Err reports it.
type Decoder struct {
	B   []byte
	err error
}

// Err returns the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Uint reads an unsigned varint.
func (d *Decoder) Uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.err = errBadEncoding
		return 0
	}
	d.B = d.B[n:]
	return v
}

// count reads a length that must not exceed the bytes left.
func (d *Decoder) count() int {
	n := d.Uint()
	if d.err == nil && n > uint64(len(d.B)) {
		d.err = errBadEncoding
		return 0
	}
	return int(n)
}

// Bytes reads length-prefixed bytes (a copy).
func (d *Decoder) Bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	b := append([]byte(nil), d.B[:n]...)
	d.B = d.B[n:]
	return b
}

// String reads a length-prefixed string.
func (d *Decoder) String() string { return string(d.Bytes()) }

// Strings reads a counted list of strings.
func (d *Decoder) Strings() []string {
	n := d.count()
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.String())
	}
	return out
}

// Plan reads a plan.
func (d *Decoder) Plan() *Plan {
	p := &Plan{}
	for range d.count() {
		s := Step{Name: d.String(), NR: uintptr(d.Uint())}
		for i := range s.Args {
			s.Args[i] = Arg{Val: uintptr(d.Uint()), Blob: int(d.Uint())}
		}
		p.Steps = append(p.Steps, s)
	}
	for range d.count() {
		p.Blobs = append(p.Blobs, d.Bytes())
	}
	for range d.count() {
		p.Relocs = append(p.Relocs, Reloc{Blob: int(d.Uint()), Offset: int(d.Uint()), Target: int(d.Uint())})
	}
	return p
}
