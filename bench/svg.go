package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// Plain SVG charts, written by hand: no dependency, readable diffs.

// Chart colours.
const (
	colourOurs    = "#2f6db5"
	colourFloor   = "#d9822b"
	colourArticle = "#a9a9a9"
	colourPeer    = "#3a9a5b"
	colourGrid    = "#e3e3e3"
	colourText    = "#222222"
)

// bar is one bar of a bar chart.
type bar struct {
	Label  string
	Value  float64 // > 0; +Inf is drawn as a full bar marked ∞
	Colour string
}

// barGroup is a titled group of bars.
type barGroup struct {
	Title string
	Bars  []bar
}

// svgDoc accumulates the elements of one SVG document.
type svgDoc struct {
	b    strings.Builder
	w, h int
}

func newSVG(w, h int) *svgDoc {
	d := &svgDoc{w: w, h: h}
	fmt.Fprintf(&d.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&d.b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
	return d
}

func (d *svgDoc) text(x, y float64, anchor, style, s string) {
	fmt.Fprintf(&d.b, `<text x="%.1f" y="%.1f" text-anchor="%s" fill="%s" %s>%s</text>`+"\n",
		x, y, anchor, colourText, style, html.EscapeString(s))
}

func (d *svgDoc) line(x1, y1, x2, y2 float64, colour, extra string) {
	fmt.Fprintf(&d.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" %s/>`+"\n", x1, y1, x2, y2, colour, extra)
}

func (d *svgDoc) rect(x, y, w, h float64, colour, extra string) {
	fmt.Fprintf(&d.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" %s/>`+"\n", x, y, w, h, colour, extra)
}

func (d *svgDoc) String() string { return d.b.String() + "</svg>\n" }

// logBarChart draws horizontal bars on a log scale, one row per bar,
// groups under their titles, with a legend of (colour, meaning) pairs.
func logBarChart(title, unit string, groups []barGroup, legend [][2]string) string {
	const (
		width, labelW, right = 860, 380, 90
		rowH, top            = 22, 58
	)
	lo, hi := math.Inf(1), 0.0
	rows := 0
	for _, g := range groups {
		if g.Title != "" {
			rows++
		}
		for _, b := range g.Bars {
			rows++
			if !math.IsInf(b.Value, 0) && b.Value > 0 {
				lo, hi = math.Min(lo, b.Value), math.Max(hi, b.Value)
			}
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dHi == dLo {
		dHi++
	}
	height := top + rows*rowH + 50
	d := newSVG(width, height)
	x0, x1 := float64(labelW), float64(width-right)
	xOf := func(v float64) float64 {
		if math.IsInf(v, 1) {
			return x1
		}
		return x0 + (math.Log10(v)-dLo)/(dHi-dLo)*(x1-x0)
	}
	d.text(float64(width)/2, 22, "middle", `font-size="15" font-weight="bold"`, title)
	yEnd := float64(top + rows*rowH)
	for p := dLo; p <= dHi; p++ {
		x := xOf(math.Pow(10, p))
		d.line(x, top-6, x, yEnd, colourGrid, "")
		d.text(x, top-10, "middle", `font-size="11"`, compact(math.Pow(10, p)))
	}
	y := float64(top)
	for _, g := range groups {
		if g.Title != "" {
			d.text(8, y+15, "start", `font-weight="bold"`, g.Title)
			y += rowH
		}
		for _, b := range g.Bars {
			d.text(x0-8, y+15, "end", "", b.Label)
			xe := xOf(b.Value)
			d.rect(x0, y+4, math.Max(xe-x0, 1), rowH-8, b.Colour, "")
			v := compact(b.Value)
			if math.IsInf(b.Value, 1) {
				v = "∞"
			}
			d.text(xe+4, y+15, "start", `font-size="11"`, v)
			y += rowH
		}
	}
	lx := 8.0
	for _, l := range legend {
		d.rect(lx, yEnd+22, 12, 12, l[0], "")
		d.text(lx+17, yEnd+32, "start", `font-size="11"`, l[1])
		lx += 24 + float64(len(l[1]))*6
	}
	d.text(8, yEnd+46, "start", `font-size="10" fill-opacity="0.7"`, unit+", log scale")
	return d.String()
}

// timelineChart draws the scaling scenario: live and busy workers above,
// queue depth below, on a shared time axis, with the bursts shaded.
func timelineChart(title string, s *scalingResult) string {
	const (
		width, left, right = 860, 60, 30
		panelH, gap, top   = 170, 50, 50
	)
	height := top + 2*panelH + gap + 70
	d := newSVG(width, height)
	d.text(float64(width)/2, 22, "middle", `font-size="15" font-weight="bold"`, title)
	end := 1.0
	maxQ := 1
	for _, p := range s.Points {
		end = math.Max(end, p.At.Seconds())
		maxQ = max(maxQ, p.Queued)
	}
	x0, x1 := float64(left), float64(width-right)
	xOf := func(t time.Duration) float64 { return x0 + t.Seconds()/end*(x1-x0) }
	panels := []struct {
		name   string
		top    float64
		yMax   int
		series []series
	}{
		{"workers", top, s.Config.Max + 1, []series{
			{"live workers", colourOurs, "", func(p scalingPoint) int { return p.Workers }},
			{"busy workers", colourFloor, `stroke-dasharray="5,3"`, func(p scalingPoint) int { return p.Busy }},
		}},
		{"queue depth", top + panelH + gap, niceCeil(maxQ), []series{
			{"queued jobs", colourPeer, "", func(p scalingPoint) int { return p.Queued }},
		}},
	}
	// Shade the bursts: from each burst's start mark to its done mark.
	var burstStart []time.Duration
	for _, m := range s.Marks {
		switch {
		case strings.HasSuffix(m.Label, "done") && len(burstStart) > 0:
			b := burstStart[len(burstStart)-1]
			for _, p := range panels {
				d.rect(xOf(b), p.top, math.Max(xOf(m.At)-xOf(b), 2), panelH, "#f3e7c9", "")
			}
		case m.Label != "stop" && m.Label != "stopped":
			burstStart = append(burstStart, m.At)
		}
	}
	for _, p := range panels {
		y0 := p.top + panelH
		yOf := func(v int) float64 { return y0 - float64(v)/float64(p.yMax)*panelH }
		step := max(1, p.yMax/5)
		for v := 0; v <= p.yMax; v += step {
			d.line(x0, yOf(v), x1, yOf(v), colourGrid, "")
			d.text(x0-6, yOf(v)+4, "end", `font-size="11"`, fmt.Sprint(v))
		}
		d.text(12, p.top+panelH/2, "middle", fmt.Sprintf(`font-size="11" transform="rotate(-90 12 %.1f)"`, p.top+panelH/2), p.name)
		for _, sr := range p.series {
			var pts []string
			for i, pt := range s.Points {
				if i > 0 { // a step: hold the previous value until this sample
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(pt.At), yOf(sr.value(s.Points[i-1]))))
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(pt.At), yOf(sr.value(pt))))
			}
			fmt.Fprintf(&d.b, `<polyline fill="none" stroke="%s" stroke-width="2" %s points="%s"/>`+"\n",
				sr.colour, sr.dash, strings.Join(pts, " "))
		}
		d.line(x0, y0, x1, y0, colourText, "")
	}
	// Time axis under the lower panel.
	yAxis := top + 2*panelH + gap
	tick := niceStep(end / 10)
	for t := 0.0; t <= end+1e-9; t += tick {
		x := x0 + t/end*(x1-x0)
		d.line(x, float64(yAxis), x, float64(yAxis)+4, colourText, "")
		d.text(x, float64(yAxis)+16, "middle", `font-size="11"`, fmt.Sprintf("%gs", math.Round(t*100)/100))
	}
	// Marks: burst starts and the stop, labels staggered.
	row := 0
	for _, m := range s.Marks {
		if strings.HasSuffix(m.Label, "done") || m.Label == "stopped" {
			continue
		}
		x := xOf(m.At)
		d.line(x, top, x, float64(yAxis), "#888888", `stroke-dasharray="2,3"`)
		lx, anchor := x+3, "start"
		if x > x0+0.85*(x1-x0) { // near the right edge: label to the left of the line
			lx, anchor = x-3, "end"
		}
		d.text(lx, top-6-float64(row%2)*12, anchor, `font-size="11"`, m.Label)
		row++
	}
	// Legend.
	lx, ly := x0, float64(yAxis)+40
	for _, p := range panels {
		for _, sr := range p.series {
			d.line(lx, ly-4, lx+22, ly-4, sr.colour, `stroke-width="2" `+sr.dash)
			d.text(lx+27, ly, "start", `font-size="11"`, sr.name)
			lx += 40 + float64(len(sr.name))*6
		}
	}
	d.rect(lx, ly-10, 14, 10, "#f3e7c9", "")
	d.text(lx+19, ly, "start", `font-size="11"`, "burst running")
	return d.String()
}

// series is one line of the timeline.
type series struct {
	name, colour, dash string
	value              func(scalingPoint) int
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten.
func niceCeil(n int) int {
	p := 1
	for {
		for _, m := range []int{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		p *= 10
	}
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// compact formats a number for an axis or a bar: 1.2k, 35k, 1.5M.
func compact(v float64) string {
	switch {
	case v >= 1e9:
		return trimZero(v/1e9) + "G"
	case v >= 1e6:
		return trimZero(v/1e6) + "M"
	case v >= 1e3:
		return trimZero(v/1e3) + "k"
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	default:
		return trimZero(v)
	}
}

// trimZero formats v with at most 3 significant digits.
func trimZero(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
	default:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
}
