// Package config loads certgate's one YAML file and applies CERTGATE_*
// environment overrides. Every key has a default, so a file states only what
// differs; with no file at all the embedded defaults (local CA, SQLite, data
// in ./certgate-data) apply.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certgate/certgate/internal/policy"
)

// Config is the whole configuration. yaml tags are the file's keys; the
// environment name of a key is CERTGATE_ + the tags joined with _ upper-cased.
type Config struct {
	Listen       string   `yaml:"listen"`
	ServerNames  []string `yaml:"server_names"`
	PublicListen string   `yaml:"public_listen"`
	// DebugListen, when set, serves net/http/pprof in plain HTTP (keep it on
	// loopback).
	DebugListen string `yaml:"debug_listen"`
	// PublicURL is the base URL relying parties use for CRL and OCSP; when
	// set, local-CA certificates carry CRL Distribution Point and AIA OCSP.
	PublicURL  string   `yaml:"public_url"`
	DataDir    string   `yaml:"data_dir"`
	Database   Database `yaml:"database"`
	Backend    string   `yaml:"backend"`
	AWSPCA     AWSPCA   `yaml:"aws_pca"`
	CACacheTTL Duration `yaml:"ca_cache_ttl"`
	// CACacheRetry is how soon a failed CA refresh is retried (at most the TTL).
	CACacheRetry Duration `yaml:"ca_cache_retry"`
	// CAExpiryWarning is how long before a CA's NotAfter it raises warnings.
	CAExpiryWarning Duration `yaml:"ca_expiry_warning"`
	// IstioValidity is the default validity of per-cluster intermediates.
	IstioValidity Duration `yaml:"istio_validity"`
	Auth          Auth     `yaml:"auth"`
	Log           Log      `yaml:"log"`
	// ShutdownTimeout bounds how long in-flight requests may run after SIGTERM.
	ShutdownTimeout Duration  `yaml:"shutdown_timeout"`
	Reconcile       Reconcile `yaml:"reconcile"`
}

// Reconcile schedules the pass that finishes pending rows left by a crash.
type Reconcile struct {
	Interval Duration `yaml:"interval"`
	// MinAge keeps the pass away from rows a live request is still working
	// on; it should exceed aws_pca.issue_timeout.
	MinAge Duration `yaml:"min_age"`
}

type Database struct {
	Driver string `yaml:"driver"`
	DSN    string `yaml:"dsn"`
	// MaxOpenConns sizes the PostgreSQL pool; SQLite picks its own.
	MaxOpenConns int `yaml:"max_open_conns"`
	// WriteLinger is how long a write batch may wait for local-CA requests
	// that are signing, to share one commit with them; 0 turns it off.
	WriteLinger Duration `yaml:"write_linger"`
}

type AWSPCA struct {
	Region            string             `yaml:"region"`
	Endpoint          string             `yaml:"endpoint"`
	RootCAArn         string             `yaml:"root_ca_arn"`
	ClientCAArn       string             `yaml:"client_ca_arn"`
	ServerCAArn       string             `yaml:"server_ca_arn"`
	IstioCAArn        string             `yaml:"istio_ca_arn"`
	MaxRetries        int                `yaml:"max_retries"`
	RetryDelay        Duration           `yaml:"retry_delay"`
	MaxRetryDelay     Duration           `yaml:"max_retry_delay"`
	IssueTimeout      Duration           `yaml:"issue_timeout"`
	Templates         map[string]string  `yaml:"templates"`
	SigningAlgorithms map[string]string  `yaml:"signing_algorithms"`
	RateLimits        map[string]float64 `yaml:"rate_limits"`
	// CRLURLs maps a CA name to its published CRL location (S3 or CNAME).
	CRLURLs map[string]string `yaml:"crl_urls"`
}

type Auth struct {
	BootstrapAdmin bool        `yaml:"bootstrap_admin"`
	Principals     []Principal `yaml:"principals"`
	// ClientCAFile, when set, is the PEM bundle client certificates must
	// chain to; otherwise the trust bundle is used.
	ClientCAFile string `yaml:"client_ca_file"`
	// RateLimit is each principal's token bucket (requests per second, burst).
	RateLimit      float64 `yaml:"rate_limit"`
	RateLimitBurst int     `yaml:"rate_limit_burst"`
}

type Principal struct {
	Name          string   `yaml:"name"`
	TokenSHA256   string   `yaml:"token_sha256"`
	MTLSSubjects  []string `yaml:"mtls_subjects"`
	policy.Config `yaml:",inline"`
}

type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // json | console
}

// Default returns the embedded defaults.
func Default() *Config {
	return &Config{
		Listen:          "127.0.0.1:8443",
		DataDir:         "./certgate-data",
		Database:        Database{Driver: "sqlite", MaxOpenConns: 16, WriteLinger: Duration(2 * time.Millisecond)},
		Backend:         "local",
		CACacheTTL:      Duration(time.Hour),
		CACacheRetry:    Duration(30 * time.Second),
		CAExpiryWarning: Duration(30 * 24 * time.Hour),
		IstioValidity:   Duration(365 * 24 * time.Hour),
		ShutdownTimeout: Duration(30 * time.Second),
		Reconcile:       Reconcile{Interval: Duration(time.Minute), MinAge: Duration(45 * time.Second)},
		AWSPCA: AWSPCA{
			Region:        "us-east-1",
			MaxRetries:    3,
			RetryDelay:    Duration(100 * time.Millisecond),
			MaxRetryDelay: Duration(5 * time.Second),
			IssueTimeout:  Duration(30 * time.Second),
			RateLimits:    map[string]float64{"IssueCertificate": 25, "GetCertificate": 75},
		},
		Auth: Auth{BootstrapAdmin: true},
		Log:  Log{Level: "info", Format: "json"},
	}
}

// Load reads path (empty: no file) over the defaults, then the environment.
func Load(path string, environ []string) (*Config, error) {
	cfg := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, errEOF) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(cfg).Elem(), "CERTGATE", envMap(environ)); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// Validate refuses configurations that cannot work, at start.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: %w", c.Listen, err)
	}
	if c.PublicListen != "" {
		if _, _, err := net.SplitHostPort(c.PublicListen); err != nil {
			return fmt.Errorf("public_listen %q: %w", c.PublicListen, err)
		}
	}
	switch c.Database.Driver {
	case "sqlite":
	case "postgres":
		if c.Database.DSN == "" {
			return fmt.Errorf("database.driver postgres needs database.dsn")
		}
	default:
		return fmt.Errorf("database.driver %q: want sqlite or postgres", c.Database.Driver)
	}
	if l := c.Database.WriteLinger; l < 0 || l > Duration(100*time.Millisecond) {
		return fmt.Errorf("database.write_linger %s: want 0 (off) to 100ms", l.D())
	}
	switch c.Backend {
	case "local":
	case "aws-pca":
		p := c.AWSPCA
		for name, arn := range map[string]string{"root_ca_arn": p.RootCAArn, "client_ca_arn": p.ClientCAArn, "server_ca_arn": p.ServerCAArn, "istio_ca_arn": p.IstioCAArn} {
			if arn == "" {
				return fmt.Errorf("backend aws-pca needs aws_pca.%s", name)
			}
		}
		if p.Region == "" {
			return fmt.Errorf("backend aws-pca needs aws_pca.region")
		}
	default:
		return fmt.Errorf("backend %q: want local or aws-pca", c.Backend)
	}
	if c.CACacheTTL <= 0 {
		return fmt.Errorf("ca_cache_ttl must be positive")
	}
	seen := map[string]bool{}
	for i, p := range c.Auth.Principals {
		if p.Name == "" {
			return fmt.Errorf("auth.principals[%d]: name is required", i)
		}
		if seen[p.Name] {
			return fmt.Errorf("auth.principals: %q twice", p.Name)
		}
		seen[p.Name] = true
		if p.TokenSHA256 == "" && len(p.MTLSSubjects) == 0 {
			return fmt.Errorf("principal %s: needs token_sha256 or mtls_subjects", p.Name)
		}
		if _, err := policy.Compile(p.Config); err != nil {
			return fmt.Errorf("principal %s: %w", p.Name, err)
		}
	}
	return nil
}

// Duration reads "90s", "1h", and also "7d" for days.
type Duration time.Duration

func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration is time.ParseDuration plus a whole-day suffix "d".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
