package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// num formats a rate: thousands separators, decimals for small numbers.
func num(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "∞"
	case math.IsNaN(v):
		return "—"
	case v >= 1e7:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 100:
		return thousands(int64(math.Round(v)))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// thousands formats n with comma separators.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// med formats the median of xs ("—" if empty).
func med(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	return num(summarize(xs).Median)
}

// span formats the min–max range of xs.
func span(xs []float64) string {
	s := summarize(xs)
	switch s.Runs {
	case 0:
		return "—"
	case 1:
		return "(1 run)"
	}
	return num(s.Min) + "–" + num(s.Max)
}

// ratioOf formats the median of per-run ratios as "2.31x (2.1–2.5)".
func ratioOf(xs []float64) string {
	s := summarize(xs)
	if s.Runs == 0 {
		return "—"
	}
	if s.Runs == 1 {
		return fmt.Sprintf("%.2fx", s.Median)
	}
	return fmt.Sprintf("%.2fx (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

// pctOf formats the median of per-run ratios as a percentage.
func pctOf(xs []float64) string {
	s := summarize(xs)
	if s.Runs == 0 {
		return "—"
	}
	if s.Runs == 1 {
		return fmt.Sprintf("%.0f%%", 100*s.Median)
	}
	return fmt.Sprintf("%.0f%% (%.0f–%.0f%%)", 100*s.Median, 100*s.Min, 100*s.Max)
}

// cpu formats a CPU time in µs: thousands separators above 100, one
// decimal below.
func cpu(us float64) string {
	if us >= 100 {
		return thousands(int64(math.Round(us)))
	}
	return fmt.Sprintf("%.1f", us)
}

// micros formats a duration per operation in µs.
func micros(perSecond float64) string {
	if perSecond <= 0 || math.IsInf(perSecond, 1) {
		return "—"
	}
	us := 1e6 / perSecond
	switch {
	case us >= 100:
		return thousands(int64(math.Round(us)))
	case us >= 1:
		return fmt.Sprintf("%.1f", us)
	default:
		return fmt.Sprintf("%.3f", us)
	}
}

// printAligned prints a table with padded columns; numeric-looking columns
// are right-aligned.
func printAligned(w io.Writer, header []string, rows [][]string) {
	widths := make([]int, len(header))
	all := append([][]string{header}, rows...)
	for _, r := range all {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for n, r := range all {
		var b strings.Builder
		b.WriteString("  ")
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 && n > 0 && looksNumeric(c) {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if n == 0 {
			var sep strings.Builder
			sep.WriteString("  ")
			for i, wd := range widths {
				sep.WriteString(strings.Repeat("-", wd))
				if i < len(widths)-1 {
					sep.WriteString("  ")
				}
			}
			fmt.Fprintln(w, sep.String())
		}
	}
}

func looksNumeric(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || s[0] == '-' || s == "—" || strings.HasPrefix(s, "∞"))
}
