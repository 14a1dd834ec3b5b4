// Command benchtable prints `go test -bench` output as one Markdown table:
// a row per benchmark (the median of its runs when -count > 1), the
// standard columns (ns/op, B/op, allocs/op) and the benchmark's own metrics
// (occurrences/s, bytes per tracked object, ...) as "value unit" pairs.
// benchstat (golang.org/x/perf) prints one table per unit, which for our
// benchmarks' dozen custom units is pages; the parsing is its benchfmt.
//
//	go test -run '^$' -bench . -benchmem ./... | tee bin/bench.txt
//	go run ./test/benchtable bin/bench.txt
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

// row is one benchmark: its runs' values by unit, units in first-seen order.
type row struct {
	pkg, name string
	units     []string
	values    map[string][]float64
}

func run(args []string, stdin io.Reader, out io.Writer) error {
	var rows []*row
	byKey := map[string]*row{}
	read := func(name string, r io.Reader) error {
		br := benchfmt.NewReader(r, name)
		for br.Scan() {
			switch rec := br.Result().(type) {
			case *benchfmt.Result:
				pkg := rec.GetConfig("pkg")
				key := pkg + "\x00" + string(rec.Name)
				rw := byKey[key]
				if rw == nil {
					rw = &row{pkg: pkg, name: string(rec.Name), values: map[string][]float64{}}
					byKey[key] = rw
					rows = append(rows, rw)
				}
				for _, v := range rec.Values {
					unit, val := v.Unit, v.Value
					if unit != "sec/op" && v.OrigUnit != "" {
						// benchfmt turns ns/... into sec/...; keep a
						// benchmark's own units as it wrote them.
						unit, val = v.OrigUnit, v.OrigValue
					}
					if _, ok := rw.values[unit]; !ok {
						rw.units = append(rw.units, unit)
					}
					rw.values[unit] = append(rw.values[unit], val)
				}
			case *benchfmt.SyntaxError:
				// Test output mixed in (logs, PASS lines): not a result.
			}
		}
		return br.Err()
	}
	if len(args) == 0 {
		if err := read("stdin", stdin); err != nil {
			return err
		}
	}
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = read(name, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if len(rows) == 0 {
		return errors.New("no benchmark results in the input")
	}
	return write(out, rows)
}

// standard are the columns every row has (empty when a benchmark lacks one).
var standard = []string{"sec/op", "B/op", "allocs/op"}

func write(out io.Writer, rows []*row) error {
	var b strings.Builder
	b.WriteString("| package | benchmark | runs | time/op | B/op | allocs/op | its own metrics |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		runs := 0
		for _, u := range r.units {
			runs = max(runs, len(r.values[u]))
		}
		cells := []string{short(r.pkg), r.name, strconv.Itoa(runs)}
		for _, u := range standard {
			if vs, ok := r.values[u]; ok {
				cells = append(cells, format(median(vs), u))
			} else {
				cells = append(cells, "")
			}
		}
		var own []string
		for _, u := range r.units {
			if !slices.Contains(standard, u) {
				own = append(own, format(median(r.values[u]), u)+" "+u)
			}
		}
		cells = append(cells, strings.Join(own, ", "))
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// short drops the module path: the package as the repository names it.
func short(pkg string) string {
	const mod = "github.com/kube-otel-bridge/kube-otel-bridge/"
	if p, ok := strings.CutPrefix(pkg, mod); ok {
		return p
	}
	return pkg
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// format prints sec/op as a duration with a unit (benchfmt converts ns/op
// to sec/op), the rest with up to 4 significant digits.
func format(v float64, unit string) string {
	if unit == "sec/op" {
		switch {
		case v >= 1:
			return strconv.FormatFloat(v, 'f', 3, 64) + " s"
		case v >= 1e-3:
			return strconv.FormatFloat(v*1e3, 'f', 3, 64) + " ms"
		case v >= 1e-6:
			return strconv.FormatFloat(v*1e6, 'f', 3, 64) + " µs"
		default:
			return strconv.FormatFloat(v*1e9, 'f', 1, 64) + " ns"
		}
	}
	if a := max(v, -v); a >= 1000 && a < 1e15 || v == float64(int64(v)) {
		return strconv.FormatFloat(v, 'f', 0, 64) // whole: 14785, not 1.478e+04
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
