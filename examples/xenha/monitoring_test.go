package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xenha/xenha/internal/testenv"
)

// TestAlertRules checks the shipped alerting rules with Debian's promtool:
// they parse, and the unit tests beside them fire the alerts they should.
func TestAlertRules(t *testing.T) {
	promtool := testenv.NeedBinary(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "xenha.rules.yml"}, {"test", "rules", "xenha.rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "monitoring"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestDashboardNamesExportedMetrics: every metric the Grafana dashboard and
// the rules query is one this binary exports.
func TestDashboardNamesExportedMetrics(t *testing.T) {
	exported := map[string]bool{}
	ch := make(chan *prometheus.Desc, 100)
	for _, c := range newMetrics(nil, newReconcileErrors()).collectors() {
		c.Describe(ch)
	}
	close(ch)
	fq := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		exported[fq.FindStringSubmatch(d.String())[1]] = true
	}
	if len(exported) < 15 {
		t.Fatalf("found only %d metrics: %v", len(exported), exported)
	}
	for _, file := range []string{"monitoring/grafana-dashboard.json", "monitoring/xenha.rules.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if file[len(file)-4:] == "json" && !json.Valid(b) {
			t.Fatalf("%s is not JSON", file)
		}
		for _, name := range regexp.MustCompile(`xenha_[a-z_]+`).FindAllString(string(b), -1) {
			base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(name, "")
			if !exported[name] && !exported[base] {
				t.Errorf("%s queries %s, which xenha does not export", file, name)
			}
		}
	}
}
