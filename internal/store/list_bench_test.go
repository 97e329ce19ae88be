package store_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/certgate/certgate/internal/servertest"
	"github.com/certgate/certgate/internal/store"
)

const benchCerts = 1_000_000

var certColumns = []string{"serial", "ca", "profile", "common_name", "sans", "key_algorithm", "status", "not_before", "not_after",
	"pem", "fingerprint", "requester", "created_at", "updated_at"}

// BenchmarkCertificateList loads 1,000,000 certificates (3 profiles, 90 %
// issued, 5 % revoked, 5 % failed, expiries over 30 days, 20 requesters),
// then measures the list/search queries of GET /v1/certificates, limit 100,
// each as a sub-benchmark reporting p50 and p99. SQLite always; PostgreSQL
// too when CERTGATE_TEST_POSTGRES_DSN is set. Skipped under -short.
//
//	go test -run '^$' -bench BenchmarkCertificateList -benchtime 500x ./internal/store/
func BenchmarkCertificateList(b *testing.B) {
	if testing.Short() {
		b.Skip("bulk-loads 1,000,000 certificates; skipped under -short")
	}
	ctx := context.Background()
	type target struct {
		name string
		opts store.Options
	}
	targets := []target{{"sqlite", store.Options{Driver: "sqlite", DataDir: b.TempDir()}}}
	if os.Getenv(servertest.PostgresEnv) != "" {
		targets = append(targets, target{"postgres", store.Options{Driver: "postgres", DSN: servertest.PostgresDSN(b)}})
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tg := range targets {
		t0 := time.Now()
		st, err := certLoad(ctx, tg.opts, start)
		if err != nil {
			b.Fatalf("%s: loading: %v", tg.name, err)
		}
		b.Logf("%s: loaded %d certificates in %s", tg.name, benchCerts, time.Since(t0).Round(time.Millisecond))
		queries := []struct {
			name string
			f    func(rng *rand.Rand) store.CertFilter
		}{
			{"profile", func(*rand.Rand) store.CertFilter { return store.CertFilter{Profile: "server"} }},
			{"profile-deep-page", func(rng *rand.Rand) store.CertFilter {
				return store.CertFilter{Profile: "server", PageToken: idToken(uint64(1 + rng.IntN(benchCerts)))}
			}},
			{"status-revoked", func(*rand.Rand) store.CertFilter { return store.CertFilter{Status: store.StatusRevoked} }},
			{"issued-expiring-before", func(rng *rand.Rand) store.CertFilter {
				t := start.Add(time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
				return store.CertFilter{Status: store.StatusIssued, ExpiresBefore: &t}
			}},
			{"expiring-before", func(rng *rand.Rand) store.CertFilter {
				t := start.Add(time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
				return store.CertFilter{ExpiresBefore: &t}
			}},
			{"common-name", func(rng *rand.Rand) store.CertFilter {
				return store.CertFilter{CommonName: fmt.Sprintf("svc-%d.example.internal", rng.IntN(benchCerts/4))}
			}},
			{"requester-profile", func(rng *rand.Rand) store.CertFilter {
				return store.CertFilter{Requester: fmt.Sprintf("team-%d", rng.IntN(20)), Profile: "client"}
			}},
		}
		for _, q := range queries {
			b.Run(tg.name+"/"+q.name, func(b *testing.B) {
				rng := rand.New(rand.NewPCG(3, 4))
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					f := q.f(rng)
					f.Limit = 100
					q0 := time.Now()
					rows, _, err := st.ListCertificates(ctx, f)
					lat = append(lat, time.Since(q0))
					if err != nil {
						b.Fatal(err)
					}
					if i == 0 && len(rows) == 0 && q.name != "common-name" {
						b.Fatalf("%s returned nothing", q.name)
					}
				}
				b.StopTimer()
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
				b.ReportMetric(pct(0.50), "p50-us")
				b.ReportMetric(pct(0.99), "p99-us")
			})
		}
		st.Close()
	}
}

// idToken makes a page token positioned before id (what a client holds
// after paging deep into a listing).
func idToken(id uint64) string {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(id)
		id >>= 8
	}
	return rawURL(b)
}

func certRow(start time.Time) func(n int, rng *rand.Rand) []any {
	profiles := []string{"client", "server", "machine"}
	cas := []string{"client-ca", "server-ca", "istio-ca"}
	return func(n int, rng *rand.Rand) []any {
		p := n % 3
		status := store.StatusIssued
		switch r := rng.IntN(100); {
		case r < 5:
			status = store.StatusRevoked
		case r < 10:
			status = store.StatusFailed
		}
		cn := fmt.Sprintf("svc-%d.example.internal", n/4)
		created := start.Add(time.Duration(n) * (30 * 24 * time.Hour / benchCerts))
		notAfter := created.Add(time.Duration(rng.Int64N(int64(7 * 24 * time.Hour))))
		return []any{fmt.Sprintf("%x%016x", n+1, rng.Uint64()), cas[p], profiles[p], cn, `["` + cn + `"]`, "ecdsa-p256", status,
			created, notAfter, "-", fmt.Sprintf("%064x", n), fmt.Sprintf("team-%d", n%20), created, created}
	}
}

func certLoad(ctx context.Context, o store.Options, start time.Time) (*store.Store, error) {
	st, err := store.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	db, err := st.DB().DB()
	if err != nil {
		return nil, err
	}
	idx, err := tableIndexes(ctx, db, o.Driver, "certificates")
	if err != nil {
		return nil, err
	}
	for _, ix := range idx {
		if _, err := db.ExecContext(ctx, "DROP INDEX "+ix); err != nil {
			return nil, err
		}
	}
	row := certRow(start)
	if o.Driver == "postgres" {
		err = copyRows(ctx, db, "certificates", certColumns, benchCerts, row)
	} else {
		err = insertRows(ctx, db, "certificates", certColumns, benchCerts, 20, row)
	}
	if err != nil {
		return nil, err
	}
	st.Close()
	if o.Driver != "postgres" {
		o.DSN = filepath.Join(o.DataDir, "certgate.db") + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-262144)&_txlock=immediate"
	}
	if st, err = store.Open(ctx, o); err != nil { // the migration rebuilds the indexes
		return nil, err
	}
	if db, err = st.DB().DB(); err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
		return nil, err
	}
	if o.Driver != "postgres" {
		st.Close()
		o.DSN = ""
		return store.Open(ctx, o)
	}
	return st, nil
}

func tableIndexes(ctx context.Context, db *sql.DB, driver, table string) ([]string, error) {
	q := "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '" + table + "' AND sql IS NOT NULL ORDER BY name"
	if driver == "postgres" {
		q = "SELECT indexname FROM pg_indexes WHERE tablename = '" + table + "' AND schemaname = current_schema() AND indexname NOT LIKE '%_pkey' ORDER BY indexname"
	}
	rs, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var n string
		if err := rs.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rs.Err()
}

func copyRows(ctx context.Context, db *sql.DB, table string, cols []string, n int, row func(int, *rand.Rand) []any) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(7, 9))
	return conn.Raw(func(dc any) error {
		_, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{table}, cols,
			pgx.CopyFromSlice(n, func(i int) ([]any, error) { return row(i, rng), nil }))
		return err
	})
}

// insertRows loads n rows into a SQLite table with multi-row INSERTs of per
// rows, in transactions of 100,000.
func insertRows(ctx context.Context, db *sql.DB, table string, cols []string, n, per int, row func(int, *rand.Rand) []any) error {
	stmtSQL := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat("(?"+strings.Repeat(",?", len(cols)-1)+"),", per), ",")
	rng := rand.New(rand.NewPCG(7, 9))
	args := make([]any, 0, per*len(cols))
	var tx *sql.Tx
	var stmt *sql.Stmt
	var err error
	for i := 0; i < n; i += per {
		if i%100_000 == 0 {
			if tx != nil {
				if err := tx.Commit(); err != nil {
					return err
				}
			}
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				return err
			}
			if stmt, err = tx.PrepareContext(ctx, stmtSQL); err != nil {
				return err
			}
		}
		args = args[:0]
		for r := 0; r < per; r++ {
			args = append(args, row(i+r, rng)...)
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func rawURL(b []byte) string { return base64RawURL.EncodeToString(b) }

var base64RawURL = base64.RawURLEncoding
