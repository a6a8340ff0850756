package upstreamtest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// RunWithLeakCheck runs the tests of a package and fails the run when,
// after they passed, a goroutine whose stack mentions one of markers is
// still alive after wait. Use it as the whole body of TestMain:
//
//	func TestMain(m *testing.M) { upstreamtest.RunWithLeakCheck(m, 3*time.Second, "sealgate/proxy.") }
func RunWithLeakCheck(m *testing.M, wait time.Duration, markers ...string) {
	code := m.Run()
	if code == 0 {
		if leaked := WaitLeaked(wait, markers...); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// WaitLeaked is Leaked after the goroutines it finds had up to wait to
// end: a goroutine that has just closed the channel a test waited on may
// still be on its way out.
func WaitLeaked(wait time.Duration, markers ...string) string {
	deadline := time.Now().Add(wait)
	for {
		leaked := Leaked(markers...)
		if leaked == "" || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Leaked returns the stacks of live goroutines, other than the caller's,
// that mention one of markers; empty when there are none.
func Leaked(markers ...string) string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	stacks := strings.Split(string(buf), "\n\n")
	var out []string
	for _, s := range stacks[1:] { // stacks[0] is the caller
		if strings.Contains(s, "upstreamtest.RunWithLeakCheck") {
			continue // the test binary's main goroutine
		}
		for _, mk := range markers {
			if strings.Contains(s, mk) {
				out = append(out, s)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}
