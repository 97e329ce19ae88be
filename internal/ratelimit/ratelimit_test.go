package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNilLimiterAllowsAll(t *testing.T) {
	for _, r := range []float64{0, -1} {
		l := New(r, 10)
		if l != nil {
			t.Fatalf("New(%v) = %v, want nil (no limit)", r, l)
		}
		for i := 0; i < 1000; i++ {
			if ok, d := l.Allow("p"); !ok || d != 0 {
				t.Fatalf("nil limiter refused: %v %v", ok, d)
			}
		}
	}
}

func TestBurstThenRefuseWithRetryAfter(t *testing.T) {
	l := New(2, 2)
	for i := 0; i < 2; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, d := l.Allow("a")
	if ok {
		t.Fatal("third request within the same instant allowed with burst 2")
	}
	if d <= 0 || d > 600*time.Millisecond {
		t.Errorf("retry after %v, want about 500ms at 2/s", d)
	}
	// A refused request does not consume a token: after the delay the next
	// one goes through.
	time.Sleep(d + 20*time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Error("refused after waiting the advertised delay")
	}
}

func TestRefusalsDoNotDeepenTheDebt(t *testing.T) {
	l := New(1, 1)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("first refused")
	}
	var last time.Duration
	for i := 0; i < 50; i++ {
		ok, d := l.Allow("a")
		if ok {
			t.Fatal("allowed over the limit")
		}
		last = d
	}
	if last > time.Second {
		t.Errorf("after 50 refusals retry-after is %v: refused requests must not pile up debt", last)
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l := New(1, 1)
	if ok, _ := l.Allow("noisy"); !ok {
		t.Fatal("first refused")
	}
	if ok, _ := l.Allow("noisy"); ok {
		t.Fatal("noisy not limited")
	}
	for _, k := range []string{"quiet", "other", ""} {
		if ok, _ := l.Allow(k); !ok {
			t.Errorf("key %q limited by another key's traffic", k)
		}
	}
}

func TestDefaultBurst(t *testing.T) {
	l := New(3, 0)
	n := 0
	for i := 0; i < 10; i++ {
		if ok, _ := l.Allow("a"); ok {
			n++
		}
	}
	if n != 4 {
		t.Errorf("burst 0 at 3/s allowed %d at once, want int(rate)+1 = 4", n)
	}
}

func TestConcurrentNeverExceedsBurst(t *testing.T) {
	l := New(0.001, 5) // effectively no refill during the test
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if ok, _ := l.Allow("shared"); ok {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 5 {
		t.Errorf("%d requests allowed concurrently, want exactly the burst of 5", got)
	}
}
