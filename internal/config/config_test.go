package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "certgate.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const arns = `
  root_ca_arn: arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/root
  client_ca_arn: arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/client
  server_ca_arn: arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/server
  istio_ca_arn: arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/istio
`

func TestDefaults(t *testing.T) {
	for _, c := range []struct {
		name    string
		useFile bool
		file    string
		env     []string
	}{
		{name: "no file, no environment"},
		{name: "empty file", useFile: true, file: ""},
		{name: "comments only", useFile: true, file: "# nothing to change\n"},
		{name: "document marker only", useFile: true, file: "---\n"},
		{name: "unrelated environment", env: []string{"PATH=/usr/bin", "HOME=/root", "CERTGATE_CONFIG=/x.yaml", "CERTGATE_TOKEN=t", "CERTGATEX_LISTEN=1.2.3.4:1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.useFile {
				path = writeFile(t, c.file)
			}
			cfg, err := Load(path, c.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(cfg, Default()) {
				t.Errorf("Load = %+v\nwant Default() = %+v", cfg, Default())
			}
		})
	}
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", d.Listen, "127.0.0.1:8443"},
		{"server_names", len(d.ServerNames), 0},
		{"public_listen", d.PublicListen, ""},
		{"data_dir", d.DataDir, "./certgate-data"},
		{"database.driver", d.Database.Driver, "sqlite"},
		{"database.dsn", d.Database.DSN, ""},
		{"backend", d.Backend, "local"},
		{"aws_pca.region", d.AWSPCA.Region, "us-east-1"},
		{"aws_pca.endpoint", d.AWSPCA.Endpoint, ""},
		{"aws_pca.max_retries", d.AWSPCA.MaxRetries, 3},
		{"aws_pca.retry_delay", d.AWSPCA.RetryDelay.D(), 100 * time.Millisecond},
		{"aws_pca.max_retry_delay", d.AWSPCA.MaxRetryDelay.D(), 5 * time.Second},
		{"aws_pca.rate_limits.IssueCertificate", d.AWSPCA.RateLimits["IssueCertificate"], 25.0},
		{"aws_pca.rate_limits.GetCertificate", d.AWSPCA.RateLimits["GetCertificate"], 75.0},
		{"ca_cache_ttl", d.CACacheTTL.D(), time.Hour},
		{"auth.bootstrap_admin", d.Auth.BootstrapAdmin, true},
		{"auth.principals", len(d.Auth.Principals), 0},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Each call is independent: changing one config leaves the next alone.
	d.AWSPCA.RateLimits["IssueCertificate"] = 1
	if Default().AWSPCA.RateLimits["IssueCertificate"] != 25 {
		t.Error("Default() shares its maps between calls")
	}
}

func TestFileOverrides(t *testing.T) {
	path := writeFile(t, `
listen: 0.0.0.0:9443
server_names: [certgate.internal, 10.1.2.3]
data_dir: /var/lib/certgate
database:
  driver: postgres
  dsn: postgres://certgate@db:5432/certgate
backend: aws-pca
aws_pca:
  region: eu-west-1`+arns+`
  max_retries: 5
  retry_delay: 250ms
  templates: {server: arn:aws:acm-pca:::template/EndEntityServerAuthCertificate_APIPassthrough/V1}
  rate_limits:
    IssueCertificate: 10
ca_cache_ttl: 2d
auth:
  bootstrap_admin: false
  principals:
    - name: payments-ci
      token_sha256: "`+strings.Repeat("ab", 32)+`"
      mtls_subjects: ["spiffe://cluster.local/ns/ci/sa/payments"]
      operations: [issue, read]
      profiles: [server, client]
      allow: ["*.payments.svc.cluster.local", "10.20.0.0/16"]
      deny: ["admin.payments.svc.cluster.local"]
      max_validity: 72h
`)
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, "0.0.0.0:9443"},
		{"server_names", cfg.ServerNames, []string{"certgate.internal", "10.1.2.3"}},
		{"data_dir", cfg.DataDir, "/var/lib/certgate"},
		{"database.driver", cfg.Database.Driver, "postgres"},
		{"database.dsn", cfg.Database.DSN, "postgres://certgate@db:5432/certgate"},
		{"database.max_open_conns (default kept)", cfg.Database.MaxOpenConns, 16},
		{"database.write_linger (default kept)", cfg.Database.WriteLinger.D(), 2 * time.Millisecond},
		{"backend", cfg.Backend, "aws-pca"},
		{"aws_pca.region", cfg.AWSPCA.Region, "eu-west-1"},
		{"aws_pca.istio_ca_arn", cfg.AWSPCA.IstioCAArn, "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/istio"},
		{"aws_pca.max_retries", cfg.AWSPCA.MaxRetries, 5},
		{"aws_pca.retry_delay", cfg.AWSPCA.RetryDelay.D(), 250 * time.Millisecond},
		{"aws_pca.max_retry_delay (default kept)", cfg.AWSPCA.MaxRetryDelay.D(), 5 * time.Second},
		{"aws_pca.templates.server", cfg.AWSPCA.Templates["server"], "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate_APIPassthrough/V1"},
		{"aws_pca.rate_limits.IssueCertificate", cfg.AWSPCA.RateLimits["IssueCertificate"], 10.0},
		{"aws_pca.rate_limits.GetCertificate (default kept)", cfg.AWSPCA.RateLimits["GetCertificate"], 75.0},
		{"ca_cache_ttl (days)", cfg.CACacheTTL.D(), 48 * time.Hour},
		{"auth.bootstrap_admin", cfg.Auth.BootstrapAdmin, false},
		{"principals", len(cfg.Auth.Principals), 1},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Auth.Principals) == 1 {
		p := cfg.Auth.Principals[0]
		if p.Name != "payments-ci" || p.TokenSHA256 != strings.Repeat("ab", 32) || !slices.Equal(p.MTLSSubjects, []string{"spiffe://cluster.local/ns/ci/sa/payments"}) ||
			!slices.Equal(p.Operations, []string{"issue", "read"}) || !slices.Equal(p.Profiles, []string{"server", "client"}) ||
			!slices.Equal(p.Allow, []string{"*.payments.svc.cluster.local", "10.20.0.0/16"}) || !slices.Equal(p.Deny, []string{"admin.payments.svc.cluster.local"}) ||
			p.MaxValidity != 72*time.Hour {
			t.Errorf("principal = %+v", p)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	path := writeFile(t, `
listen: 0.0.0.0:9443
database: {driver: postgres, dsn: "postgres://file@db/certgate"}
aws_pca: {region: eu-west-1, templates: {client: FromFile}}
`)
	env := []string{
		"CERTGATE_DATABASE_DSN=postgres://env@db/certgate?sslmode=require",
		"CERTGATE_AWS_PCA_REGION=ap-southeast-2",
		"CERTGATE_LISTEN=127.0.0.1:10443",
		"CERTGATE_CA_CACHE_TTL=90m",
		"CERTGATE_AWS_PCA_MAX_RETRY_DELAY=2d",
		"CERTGATE_SERVER_NAMES=a.example.com, b.example.com,,10.0.0.1",
		"CERTGATE_AWS_PCA_TEMPLATES={server: ServerTemplate/V1, machine: MachineTemplate/V1}",
		"CERTGATE_AWS_PCA_RATE_LIMITS={IssueCertificate: 5}",
		"CERTGATE_AWS_PCA_MAX_RETRIES=7",
		"CERTGATE_AUTH_BOOTSTRAP_ADMIN=false",
		"CERTGATE_DATABASE_MAX_OPEN_CONNS=4",
		"CERTGATE_DATABASE_WRITE_LINGER=0s",
		"CERTGATE_AUTH_PRINCIPALS=[{name: ci, token_sha256: " + strings.Repeat("0f", 32) + ", operations: [issue], profiles: [server], allow: ['*.ci.example.com'], max_validity: 24h}]",
		"PATH=/usr/bin",
	}
	cfg, err := Load(path, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"CERTGATE_DATABASE_DSN beats the file", cfg.Database.DSN, "postgres://env@db/certgate?sslmode=require"},
		{"database.driver from the file", cfg.Database.Driver, "postgres"},
		{"CERTGATE_AWS_PCA_REGION beats the file", cfg.AWSPCA.Region, "ap-southeast-2"},
		{"CERTGATE_LISTEN beats the file", cfg.Listen, "127.0.0.1:10443"},
		{"CERTGATE_CA_CACHE_TTL duration", cfg.CACacheTTL.D(), 90 * time.Minute},
		{"CERTGATE_AWS_PCA_MAX_RETRY_DELAY in days", cfg.AWSPCA.MaxRetryDelay.D(), 48 * time.Hour},
		{"CERTGATE_SERVER_NAMES list", cfg.ServerNames, []string{"a.example.com", "b.example.com", "10.0.0.1"}},
		{"templates.server from the env map", cfg.AWSPCA.Templates["server"], "ServerTemplate/V1"},
		{"templates.machine from the env map", cfg.AWSPCA.Templates["machine"], "MachineTemplate/V1"},
		{"rate_limits.IssueCertificate from env", cfg.AWSPCA.RateLimits["IssueCertificate"], 5.0},
		{"CERTGATE_AWS_PCA_MAX_RETRIES int", cfg.AWSPCA.MaxRetries, 7},
		{"CERTGATE_AUTH_BOOTSTRAP_ADMIN bool", cfg.Auth.BootstrapAdmin, false},
		{"CERTGATE_DATABASE_MAX_OPEN_CONNS", cfg.Database.MaxOpenConns, 4},
		{"CERTGATE_DATABASE_WRITE_LINGER=0s turns it off", cfg.Database.WriteLinger.D(), time.Duration(0)},
		{"principals from env", len(cfg.Auth.Principals), 1},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Auth.Principals) == 1 {
		p := cfg.Auth.Principals[0]
		if p.Name != "ci" || !slices.Equal(p.Operations, []string{"issue"}) || !slices.Equal(p.Allow, []string{"*.ci.example.com"}) || p.MaxValidity != 24*time.Hour {
			t.Errorf("principal from env = %+v", p)
		}
	}
	// An environment variable set to the empty string overrides too.
	cfg, err = Load("", []string{"CERTGATE_SERVER_NAMES=", "CERTGATE_PUBLIC_LISTEN="})
	if err != nil || len(cfg.ServerNames) != 0 || cfg.PublicListen != "" {
		t.Errorf("empty overrides: %+v, %v", cfg, err)
	}
}

func TestRefused(t *testing.T) {
	cases := []struct {
		name string
		file string // YAML; "" = no file
		env  []string
		want string // part of the error
	}{
		{name: "unknown top-level key", file: "listn: 127.0.0.1:1\n", want: "listn"},
		{name: "unknown nested key", file: "database: {drvier: postgres}\n", want: "drvier"},
		{name: "unknown aws_pca key", file: "aws_pca: {regoin: eu-west-1}\n", want: "regoin"},
		{name: "unknown principal key", file: "auth: {principals: [{name: x, token_sha256: y, operatoins: [issue]}]}\n", want: "operatoins"},
		{name: "YAML syntax error", file: "listen: [\n", want: ""},
		{name: "list where a string belongs", file: "listen: [a, b]\n", want: ""},
		{name: "bad duration in file", file: "ca_cache_ttl: soon\n", want: "soon"},
		{name: "duration without unit", file: "ca_cache_ttl: 90\n", want: ""},
		{name: "zero ca_cache_ttl", file: "ca_cache_ttl: 0s\n", want: "ca_cache_ttl"},
		{name: "negative ca_cache_ttl", file: "ca_cache_ttl: -1h\n", want: "ca_cache_ttl"},
		{name: "bad driver", file: "database: {driver: mysql}\n", want: "mysql"},
		{name: "bad driver from env", env: []string{"CERTGATE_DATABASE_DRIVER=oracle"}, want: "oracle"},
		{name: "postgres without dsn", file: "database: {driver: postgres}\n", want: "dsn"},
		{name: "postgres without dsn (env)", env: []string{"CERTGATE_DATABASE_DRIVER=postgres"}, want: "dsn"},
		{name: "negative write_linger", file: "database: {write_linger: -1ms}\n", want: "write_linger"},
		{name: "write_linger beyond 100ms", file: "database: {write_linger: 1s}\n", want: "write_linger"},
		{name: "bad backend", file: "backend: vault\n", want: "vault"},
		{name: "aws-pca without ARNs", file: "backend: aws-pca\n", want: "arn"},
		{name: "aws-pca without istio ARN", file: "backend: aws-pca\naws_pca:" + strings.Replace(arns, "  istio_ca_arn", "  # istio_ca_arn", 1), want: "istio_ca_arn"},
		{name: "aws-pca without root ARN", file: "backend: aws-pca\naws_pca:" + strings.Replace(arns, "  root_ca_arn", "  # root_ca_arn", 1), want: "root_ca_arn"},
		{name: "aws-pca without region", file: "backend: aws-pca\naws_pca:" + arns + "  region: \"\"\n", want: "region"},
		{name: "listen without port", file: "listen: localhost\n", want: "listen"},
		{name: "public_listen without port", file: "public_listen: 0.0.0.0\n", want: "public_listen"},
		{name: "bad duration in env", env: []string{"CERTGATE_CA_CACHE_TTL=soon"}, want: "CERTGATE_CA_CACHE_TTL"},
		{name: "bad int in env", env: []string{"CERTGATE_AWS_PCA_MAX_RETRIES=three"}, want: "CERTGATE_AWS_PCA_MAX_RETRIES"},
		{name: "bad bool in env", env: []string{"CERTGATE_AUTH_BOOTSTRAP_ADMIN=maybe"}, want: "CERTGATE_AUTH_BOOTSTRAP_ADMIN"},
		{name: "bad float in env", env: []string{"CERTGATE_AUTH_RATE_LIMIT=fast"}, want: "CERTGATE_AUTH_RATE_LIMIT"},
		{name: "bad map in env", env: []string{"CERTGATE_AWS_PCA_TEMPLATES={server: [}"}, want: "CERTGATE_AWS_PCA_TEMPLATES"},
		{name: "map with wrong value type in env", env: []string{"CERTGATE_AWS_PCA_RATE_LIMITS={IssueCertificate: lots}"}, want: "CERTGATE_AWS_PCA_RATE_LIMITS"},
		{name: "principal without name", file: "auth: {principals: [{token_sha256: " + strings.Repeat("ab", 32) + "}]}\n", want: "name"},
		{name: "principal twice", file: "auth: {principals: [{name: a, token_sha256: x}, {name: a, token_sha256: y}]}\n", want: "twice"},
		{name: "principal without credentials", file: "auth: {principals: [{name: a, operations: [issue]}]}\n", want: "token_sha256"},
		{name: "principal with unknown operation", file: "auth: {principals: [{name: a, token_sha256: x, operations: [fly]}]}\n", want: "fly"},
		{name: "principal with bad allow pattern", file: "auth: {principals: [{name: a, token_sha256: x, allow: ['10.0.0.0/33']}]}\n", want: "10.0.0.0/33"},
		{name: "principal with negative max_validity", file: "auth: {principals: [{name: a, token_sha256: x, max_validity: -1h}]}\n", want: "max_validity"},
		{name: "bad principal policy from env", env: []string{"CERTGATE_AUTH_PRINCIPALS=[{name: a, token_sha256: x, operations: [fly]}]"}, want: "fly"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = writeFile(t, c.file)
			}
			cfg, err := Load(path, c.env)
			if err == nil {
				t.Fatalf("Load accepted it: %+v", cfg)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestParseDuration(t *testing.T) {
	ok := map[string]time.Duration{"90s": 90 * time.Second, "1h": time.Hour, "7d": 7 * 24 * time.Hour, "0d": 0, " 2d ": 48 * time.Hour, "1h30m": 90 * time.Minute}
	for in, want := range ok {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "1.5d", "xd", "abc", "10", "1 d"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}
