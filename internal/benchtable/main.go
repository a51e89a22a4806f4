// Command benchtable runs every benchmark in the given packages and prints one
// table of the figures, and optionally the same as JSON, so that figures can be
// compared across commits. It is what `make bench` runs.
//
//	go run ./internal/benchtable [-json out.json] [-benchtime 1s] [-bench regexp] -- ./...
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one benchmark's figures.
type Result struct {
	Package    string             `json:"package"`
	Name       string             `json:"name"`
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"` // unit → value, e.g. "ns/op", "ms/failover-p50"
}

// Report is the JSON document.
type Report struct {
	Time      time.Time `json:"time"`
	Commit    string    `json:"commit,omitempty"`
	GoVersion string    `json:"go_version,omitempty"`
	// Hardware is the CPU go test reported, the OS/architecture and the
	// number of CPUs; Load is /proc/loadavg before and after the run: the
	// figures mean little on a machine that was busy.
	Hardware string   `json:"hardware,omitempty"`
	Load     string   `json:"load,omitempty"`
	Results  []Result `json:"results"`
	Failed   []string `json:"failed,omitempty"` // packages whose benchmarks failed
}

func main() {
	jsonPath := flag.String("json", "", "also write the figures as JSON to this file")
	benchtime := flag.String("benchtime", os.Getenv("BENCHTIME"), "passed to go test -benchtime")
	bench := flag.String("bench", envOr("BENCH", "."), "benchmarks to run (go test -bench)")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}

	args := []string{"test", "-run", "^$", "-bench", *bench, "-benchmem", "-count", "1", "-timeout", "30m"}
	if *benchtime != "" {
		args = append(args, "-benchtime", *benchtime)
	}
	args = append(args, pkgs...)
	loadBefore := loadavg()
	cmd := exec.Command("go", args...)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, os.Stderr) // progress stays visible
	cmd.Stderr = os.Stderr
	runErr := cmd.Run()

	rep := parse(&out)
	rep.Hardware = fmt.Sprintf("%s, %s/%s, %d CPUs", cmp.Or(rep.Hardware, "unknown CPU"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	rep.Load = fmt.Sprintf("load average %s before, %s after", loadBefore, loadavg())
	rep.Time = time.Now().UTC()
	rep.Commit = gitCommit()
	if v, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		rep.GoVersion = strings.TrimSpace(string(v))
	}
	printTable(os.Stdout, rep)
	if *jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(1)
		}
		fmt.Printf("\nfigures written to %s\n", *jsonPath)
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "benchtable: go test failed (%v) in: %s\n", runErr, strings.Join(rep.Failed, ", "))
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// loadavg is the first three fields of /proc/loadavg, or "unknown".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func gitCommit() string {
	b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// parse reads go test -bench output. Benchmark lines follow a "pkg:" line and
// look like: BenchmarkName-2  10  123 ns/op  45 B/op  0.91 ms/failover-p50
func parse(r io.Reader) Report {
	var rep Report
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if c, ok := strings.CutPrefix(line, "cpu: "); ok && rep.Hardware == "" {
			rep.Hardware = strings.TrimSpace(c)
			continue
		}
		if strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "--- FAIL") {
			// "FAIL\tpkg\t1.2s" names a package, "--- FAIL: BenchmarkX" a benchmark.
			f := strings.Fields(strings.TrimPrefix(line, "--- FAIL:"))
			if strings.HasPrefix(line, "FAIL\t") {
				f = f[1:]
			}
			if len(f) > 0 {
				rep.Failed = append(rep.Failed, f[0])
			}
			continue
		}
		if res, ok := parseLine(pkg, line); ok {
			rep.Results = append(rep.Results, res)
		}
	}
	return rep
}

func parseLine(pkg, line string) (Result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
		return Result{}, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return Result{}, false
	}
	name := strings.TrimPrefix(f[0], "Benchmark")
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i] // drop the GOMAXPROCS suffix
		}
	}
	res := Result{Package: pkg, Name: name, Iterations: n, Metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		res.Metrics[f[i+1]] = v
	}
	return res, len(res.Metrics) > 0
}

func printTable(w io.Writer, rep Report) {
	fmt.Fprintf(w, "\n%s, commit %s, %s\n%s; %s\n\n", rep.Time.Format("2006-01-02 15:04 MST"), cmp.Or(rep.Commit, "unknown"),
		cmp.Or(rep.GoVersion, "unknown Go"), rep.Hardware, rep.Load)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "package\tbenchmark\tvalue\tunit\t")
	for _, r := range rep.Results {
		short := strings.TrimPrefix(r.Package, "github.com/xenha/xenha/")
		first := true
		for _, unit := range sortedUnits(r.Metrics) {
			p, b := short, r.Name
			if !first {
				p, b = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", p, b, format(r.Metrics[unit]), unit)
			first = false
		}
	}
	tw.Flush()
}

// sortedUnits puts custom figures (ms/failover-p50, ...) before Go's standard
// ns/op, B/op and allocs/op, each group in name order.
func sortedUnits(m map[string]float64) []string {
	var custom, std []string
	for u := range m {
		switch u {
		case "ns/op", "B/op", "allocs/op", "MB/s":
			std = append(std, u)
		default:
			custom = append(custom, u)
		}
	}
	sortStrings(custom)
	sortStrings(std)
	return append(custom, std...)
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func format(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e15:
		return strconv.FormatInt(int64(v), 10)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}
