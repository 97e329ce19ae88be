// Package ratelimit is a token bucket per principal, so one noisy client
// cannot starve the others or exhaust the CA's quota.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// PerKey holds one limiter per key, created on first use.
type PerKey struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

// New returns nil (no limit) when perSecond <= 0.
func New(perSecond float64, burst int) *PerKey {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = int(perSecond) + 1
	}
	return &PerKey{rate: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// Allow takes a token for key, or says how long until one is free.
func (p *PerKey) Allow(key string) (bool, time.Duration) {
	if p == nil {
		return true, 0
	}
	p.mu.Lock()
	l := p.m[key]
	if l == nil {
		l = rate.NewLimiter(p.rate, p.burst)
		p.m[key] = l
	}
	p.mu.Unlock()
	r := l.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}
