package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xenha/xenha/internal/testenv"
)

// scrape reads a member's /metrics with the Prometheus text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the sample of name (a histogram's _count included) whose labels
// include labels, or 0.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	base, count := strings.CutSuffix(name, "_count")
	f := fams[name]
	if f == nil && count {
		f = fams[base]
	}
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

// browser finds Debian's chromium.
func browser(t *testing.T) string {
	return testenv.NeedBinary(t, "chromium")
}

// statusPageInBrowser loads the status page in headless chromium and finds
// a host row and a VM row, filled in by the page's own script from the API.
func statusPageInBrowser(t *testing.T, url string) {
	exe := browser(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`#hosts tr[data-key="host-h1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#vms tr[data-key="vm-web1"]`)),
	)
	if err != nil {
		t.Fatalf("status page %s: %v", url, err)
	}
	hostRow, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#hosts tr[data-key="host-h1"]`)))
	if err != nil {
		t.Fatal(err)
	}
	vmRow, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#vms tr[data-key="vm-web1"]`)))
	if err != nil {
		t.Fatal(err)
	}
	leader, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#leader`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hostRow, "online") || !strings.Contains(vmRow, "running") || leader != "h1" {
		t.Fatalf("status page shows host row %q, VM row %q, leader %q", hostRow, vmRow, leader)
	}
}
