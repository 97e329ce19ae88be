package pcatest

import (
	"runtime"
	"strings"
)

// Goroutines counts the goroutines that a leak check around PCA calls cares
// about: all of them except HTTP connection plumbing (a client's keep-alive
// read and write loops, a server's per-connection and accept goroutines).
// Those come and go with the connection pool — a cancelled call closes its
// connection and the next call dials another — so counting them makes a
// leak check flaky without making it stricter. A goroutine stuck in a PCA
// call is created by the caller, not by net/http, and is still counted.
func Goroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.TrimSpace(g) == "" || plumbing(g) {
			continue
		}
		count++
	}
	return count
}

func plumbing(stack string) bool {
	for _, s := range []string{
		"created by net/http.(*Transport).dialConn",
		"created by net/http.(*Server).Serve",
		"net/http/httptest.(*Server).goServe",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
