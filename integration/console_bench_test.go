package integration_test

import (
	"testing"
	"time"
)

// BenchmarkConsoleCPUPerStatus reports the console's CPU time per status
// event with 1,000 clients and 50 viewers on the job's page.
func BenchmarkConsoleCPUPerStatus(b *testing.B) {
	benchOpen(b)
	var total time.Duration
	for range b.N {
		total += consoleLoad(b, 1000, 50)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "console-cpu-µs/status")
}
