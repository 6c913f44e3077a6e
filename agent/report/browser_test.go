package report

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser as Debian and Ubuntu name it. Missing
// Chromium fails the test when CI is set and skips it otherwise (project
// rule).
func chromiumPath(t *testing.T) string {
	t.Helper()
	var errs []error
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		p, err := exec.LookPath(name)
		if err == nil {
			return p
		}
		errs = append(errs, err)
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no Chromium found: %v (required when CI is set)", errors.Join(errs...))
	}
	t.Skipf("no Chromium found: %v (set CI to make this a failure)", errors.Join(errs...))
	return ""
}

// TestBrowserRendersReport opens a 2-hour session's report from a file in
// headless Chromium: the page is not blank (a screenshot with many colours
// and a fair share of non-white pixels), and the chart elements exist in
// the DOM the browser built, with a size on screen.
func TestBrowserRendersReport(t *testing.T) {
	browser := chromiumPath(t)

	s := longSession(2*time.Hour + 10*time.Minute)
	var b bytes.Buffer
	if err := WriteHTML(&b, s); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1100, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc() // waits for the browser to exit
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(tabCtx, 60*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx,
		chromedp.Navigate("file://"+file),
		chromedp.WaitVisible(chromedp.CSS("svg.chart-diastolic")),
	); err != nil {
		t.Fatalf("load the report: %v", err)
	}

	count := func(selector string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(selector)+`).length`))
		if err != nil {
			t.Fatalf("count %s: %v", selector, err)
		}
		return n
	}
	// Two doses on each of the four charts; the SpO2 alarm on the SpO2
	// chart and the sensor-off alarm (no metric) on all four; four
	// baselines; the SpO2 trace broken once by the sensor-off minute.
	for sel, want := range map[string]int{
		"svg.chart":                              4,
		".dose-marker":                           8,
		".alarm-band":                            5,
		".chart-spo2 .alarm-band":                2,
		".alarm-band.alarm-high":                 4,
		".baseline-line":                         4,
		".chart-spo2 polyline":                   2,
		".chart-systolic circle.point":           9,
		"script":                                 0,
		"#alarms tr.alarm":                       2,
		"#check":                                 1,
		".chart-spo2 polyline, .chart-spo2 path": 2,
	} {
		if got := count(sel); got != want {
			t.Errorf("%s: %d elements, want %d", sel, got, want)
		}
	}

	// The charts take room on screen: laid out, not collapsed.
	width, err := chromedp.Run(ctx, chromedp.Evaluate[float64](
		`document.querySelector("svg.chart-spo2").getBoundingClientRect().width`))
	if err != nil || width < 500 {
		t.Errorf("chart-spo2 is %.0f px wide (%v)", width, err)
	}
	traceLen, err := chromedp.Run(ctx, chromedp.Evaluate[float64](
		`Array.from(document.querySelectorAll(".chart-spo2 polyline")).reduce((s, p) => s + p.getTotalLength(), 0)`))
	if err != nil || traceLen < 500 {
		t.Errorf("SpO2 trace is %.0f units long (%v)", traceLen, err)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	colours, nonWhite, total := pixelStats(img)
	t.Logf("screenshot %v: %d colours, %.1f %% non-white", img.Bounds().Size(), colours, 100*float64(nonWhite)/float64(total))
	if img.Bounds().Dy() < 1500 {
		t.Errorf("full-page screenshot only %d px high: the page did not lay out", img.Bounds().Dy())
	}
	if colours < 50 {
		t.Errorf("screenshot has %d distinct colours: blank or nearly", colours)
	}
	if frac := float64(nonWhite) / float64(total); frac < 0.05 {
		t.Errorf("only %.1f %% of the screenshot is not white", 100*frac)
	}
	// The priority colours and the trace colour are on the page.
	for name, c := range map[string][3]uint8{"trace blue": {0x15, 0x65, 0xc0}, "dose purple": {0x6a, 0x1b, 0x9a}} {
		if !hasColour(img, c) {
			t.Errorf("no %s pixel in the screenshot", name)
		}
	}
}

func jsString(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

func pixelStats(img image.Image) (colours, nonWhite, total int) {
	seen := map[[3]uint32]bool{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
			if r>>8 < 245 || g>>8 < 245 || b>>8 < 245 {
				nonWhite++
			}
			total++
		}
	}
	return len(seen), nonWhite, total
}

// hasColour looks for a pixel within a small distance of c (antialiasing).
func hasColour(img image.Image, c [3]uint8) bool {
	bounds := img.Bounds()
	near := func(a uint32, b uint8) bool { d := int(a>>8) - int(b); return d > -12 && d < 12 }
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if near(r, c[0]) && near(g, c[1]) && near(b, c[2]) {
				return true
			}
		}
	}
	return false
}
