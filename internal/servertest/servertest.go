// Package servertest starts a whole certgate server (real TLS listener on
// loopback, real database, real CA backend) for end-to-end tests.
package servertest

import (
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/server"
)

// PostgresEnv names the DSN of the test PostgreSQL server.
const PostgresEnv = "CERTGATE_TEST_POSTGRES_DSN"

// Env is a running server and an admin client.
type Env struct {
	Srv     *server.Server
	Client  *client.Client // admin, bootstrap token
	URL     string
	Cfg     *config.Config
	Logs    *observer.ObservedLogs
	RootPEM []byte
}

// Option adjusts the config or options before start.
type Option func(*config.Config, *server.Options)

// WithPostgres runs on the test PostgreSQL database in a fresh schema.
func WithPostgres(t testing.TB) Option {
	dsn := PostgresDSN(t)
	return func(c *config.Config, _ *server.Options) {
		c.Database.Driver = "postgres"
		c.Database.DSN = dsn
	}
}

var schemaSeq atomic.Int64

// PostgresDSN returns a DSN for a fresh, empty schema on the test server,
// dropped when the test ends; it skips the test when the server is not
// configured.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL variant (set it to a DSN such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", PostgresEnv)
	}
	schema := fmt.Sprintf("cg_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, schemaSeq.Add(1))
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	return withSearchPath(base, schema)
}

func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}

// Start runs a server on 127.0.0.1:0 with a temporary data directory.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.RateLimit = 0
	var so server.Options
	for _, o := range opts {
		o(cfg, &so)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	if so.Log == nil {
		so.Log = zap.New(core)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, so)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		cancel()
		t.Fatalf("server.Start: %v", err)
	}
	e := &Env{Srv: srv, Cfg: cfg, Logs: logs, URL: "https://" + srv.Addr()}
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
		cancel()
	})
	e.RootPEM = []byte(rootPEM(srv))
	e.Client = e.NewClient(t, srv.Token, nil)
	return e
}

func rootPEM(s *server.Server) string {
	roots := s.CAs.Roots()
	var b strings.Builder
	for _, r := range roots {
		b.WriteString(pemCert(r.Raw))
	}
	return b.String()
}

// NewClient builds a client trusting only the server's root.
func (e *Env) NewClient(t testing.TB, token string, cert *tls.Certificate) *client.Client {
	t.Helper()
	c, err := client.New(e.URL, token, e.RootPEM, cert)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
