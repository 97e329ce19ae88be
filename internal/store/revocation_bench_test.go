package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

const (
	benchEvents = 1_000_000
	benchSpan   = 30 * 24 * time.Hour
	// benchRows per INSERT on SQLite: binding gets slower per parameter as
	// statements grow, and 25 rows (225 parameters) measured fastest.
	benchRows = 25
)

var benchCAs = []string{"root", "client-ca", "server-ca", "istio-ca"}

// BenchmarkEventsRangeQuery loads 1,000,000 events across 4 CAs over 30 days,
// then measures the events API's query: one CA, a one-hour window at a random
// offset, newest first, limit 100 (store.ListEvents, the (ca, time, id)
// index). It reports p50 and p99 latency per query. SQLite always;
// PostgreSQL too when CERTGATE_TEST_POSTGRES_DSN is set. Skipped under -short.
//
//	go test -run '^$' -bench BenchmarkEventsRangeQuery -benchtime 2000x ./internal/store/
func BenchmarkEventsRangeQuery(b *testing.B) {
	if testing.Short() {
		b.Skip("bulk-loads 1,000,000 events; skipped under -short")
	}
	ctx := context.Background()
	type target struct {
		name string
		opts store.Options
	}
	targets := []target{{"sqlite", store.Options{Driver: "sqlite", DataDir: b.TempDir()}}}
	if os.Getenv(servertest.PostgresEnv) != "" {
		targets = append(targets, target{"postgres", store.Options{Driver: "postgres", DSN: servertest.PostgresDSN(b)}})
	} else {
		b.Logf("%s not set: PostgreSQL variant skipped", servertest.PostgresEnv)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tg := range targets {
		t0 := time.Now()
		st, insert, err := benchLoad(ctx, tg.opts, start)
		if err != nil {
			b.Fatalf("%s: loading: %v", tg.name, err)
		}
		load := time.Since(t0)
		b.Logf("%s: loaded %d events in %s (rows %s, then indexes and ANALYZE %s)", tg.name, benchEvents,
			load.Round(time.Millisecond), insert.Round(time.Millisecond), (load - insert).Round(time.Millisecond))
		b.Run(tg.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				since := start.Add(time.Duration(rng.Int64N(int64(benchSpan - time.Hour))))
				until := since.Add(time.Hour)
				caName := benchCAs[rng.IntN(len(benchCAs))]
				q0 := time.Now()
				evs, _, err := st.ListEvents(ctx, store.EventFilter{CA: caName, Since: &since, Until: &until, Limit: 100})
				lat = append(lat, time.Since(q0))
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					// ~347 events per CA-hour: a full page is expected.
					if len(evs) != 100 {
						b.Fatalf("only %d events in a one-hour window", len(evs))
					}
					for _, e := range evs {
						if e.CA != caName || e.Time.Before(since) || !e.Time.Before(until) {
							b.Fatalf("event outside the query: %+v", e)
						}
					}
				}
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			pct := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-us")
			b.ReportMetric(pct(0.99), "p99-us")
			b.ReportMetric(load.Seconds(), "load-s")
		})
		st.Close()
	}
}

// benchLoad fills a fresh database with benchEvents events the fast way:
// the events table's secondary indexes are dropped, rows go in with COPY
// (PostgreSQL) or multi-row INSERTs in large transactions (SQLite), and the
// store is then reopened so its own migration rebuilds exactly the indexes
// production has — one sorted build per index instead of a million updates.
func benchLoad(ctx context.Context, o store.Options, start time.Time) (*store.Store, time.Duration, error) {
	st, err := store.Open(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	sqlDB, err := st.DB().DB()
	if err != nil {
		return nil, 0, err
	}
	indexes, err := tableIndexes(ctx, sqlDB, o.Driver, "events")
	if err != nil {
		return nil, 0, err
	}
	for _, ix := range indexes {
		if _, err := sqlDB.ExecContext(ctx, "DROP INDEX "+ix); err != nil {
			return nil, 0, err
		}
	}
	t0 := time.Now()
	rows := benchRowsFunc(start)
	if o.Driver == "postgres" {
		err = copyRows(ctx, sqlDB, "events", benchColumns, benchEvents, rows)
	} else {
		err = insertRows(ctx, sqlDB, "events", benchColumns, benchEvents, benchRows, rows)
	}
	if err != nil {
		return nil, 0, err
	}
	insert := time.Since(t0)
	st.Close()
	if o.Driver != "postgres" {
		// Index builds sort in SQLite's page cache; give them room.
		o.DSN = filepath.Join(o.DataDir, "certgate.db") + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-262144)&_txlock=immediate"
	}
	if st, err = store.Open(ctx, o); err != nil { // migration recreates the indexes
		return nil, 0, err
	}
	if sqlDB, err = st.DB().DB(); err != nil {
		return nil, 0, err
	}
	after, err := tableIndexes(ctx, sqlDB, o.Driver, "events")
	if err != nil {
		return nil, 0, err
	}
	if len(after) != len(indexes) || len(indexes) < 3 {
		return nil, 0, fmt.Errorf("indexes before %v, after reopening %v", indexes, after)
	}
	analyze := "ANALYZE"
	if o.Driver == "postgres" {
		analyze = "ANALYZE events"
	}
	if _, err := sqlDB.ExecContext(ctx, analyze); err != nil {
		return nil, 0, err
	}
	if o.Driver != "postgres" {
		// Queries run with the production settings.
		st.Close()
		o.DSN = ""
		if st, err = store.Open(ctx, o); err != nil {
			return nil, 0, err
		}
	}
	return st, insert, nil
}

var benchColumns = []string{"ca", "type", "time", "serial", "principal", "request_id", "source_addr", "outcome", "details"}

// benchRowsFunc generates event n: CAs round-robin, one event every 2.6 s
// over 30 days, one in twenty a revocation.
func benchRowsFunc(start time.Time) func(n int, rng *rand.Rand) []any {
	step := benchSpan / benchEvents
	return func(n int, rng *rand.Rand) []any {
		typ, details := store.EventIssued, `{"profile":"server"}`
		if n%20 == 0 {
			typ, details = store.EventRevoked, `{"reason":"superseded"}`
		}
		return []any{benchCAs[n%len(benchCAs)], typ, start.Add(time.Duration(n) * step), fmt.Sprintf("%x%016x", rng.Uint64()>>1, rng.Uint64()),
			"bench", "req-" + strconv.Itoa(n), "10.0.0.1", "success", details}
	}
}
