// Package bench drives issuance load — against a running server over HTTPS,
// or in process as the ceiling to compare against — and checks every
// certificate it gets back.
package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/client"
	"github.com/certgate/certgate/internal/issuance"
	"github.com/certgate/certgate/internal/validation"
)

// Options of one run.
type Options struct {
	Concurrency int
	Duration    time.Duration // used when Count == 0
	Count       int
	Profile     string
	KeyType     string // ecdsa-p256 | rsa-2048
	ServerKeys  bool   // let the server generate keys (no CSR)
	InProcess   bool
	// Baseline drives a plain-HTTP signer started in this process (no TLS,
	// no auth, no database: the in-process work behind net/http and JSON)
	// with the same checking client, to show what bare HTTP costs here.
	Baseline bool
	CSRPool  int // distinct pre-generated CSRs
}

// Report is what a run measured.
type Report struct {
	Mode        string  `json:"mode"`
	Profile     string  `json:"profile"`
	KeyType     string  `json:"key_type"`
	ServerKeys  bool    `json:"server_keys"`
	Concurrency int     `json:"concurrency"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	Maxms       float64 `json:"max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

// String renders the report for humans.
func (r *Report) String() string {
	s := fmt.Sprintf("%s  profile=%s key=%s server_keys=%v concurrency=%d\n  requests %d in %.2fs, errors %d\n  throughput %.1f certificates/s\n  latency p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n",
		r.Mode, r.Profile, r.KeyType, r.ServerKeys, r.Concurrency, r.Requests, r.Seconds, r.Errors, r.RPS, r.P50ms, r.P90ms, r.P99ms, r.Maxms)
	if r.FirstError != "" {
		s += "  first error: " + r.FirstError + "\n"
	}
	return s
}

type work struct {
	csrPEM string
	pub    crypto.PublicKey
	cn     string
}

func pregenerate(n int, keyType string) ([]work, error) {
	out := make([]work, n)
	for i := range out {
		var key crypto.Signer
		var err error
		if keyType == issuance.KeyRSA2048 {
			key, err = rsa.GenerateKey(rand.Reader, 2048)
		} else {
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			return nil, err
		}
		cn := fmt.Sprintf("bench-%d.bench.certgate.internal", i)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn}}, key)
		if err != nil {
			return nil, err
		}
		out[i] = work{csrPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), pub: key.Public(), cn: cn}
	}
	return out, nil
}

// Run drives the load. c is nil for InProcess and Baseline.
func Run(ctx context.Context, c *client.Client, o Options) (*Report, error) {
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.Profile == "" {
		o.Profile = ca.ProfileServer
	}
	if o.KeyType == "" {
		o.KeyType = issuance.KeyECDSAP256
	}
	if o.CSRPool <= 0 {
		o.CSRPool = 64
	}
	if o.Count == 0 && o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	var pool []work
	var err error
	if !o.ServerKeys {
		if pool, err = pregenerate(o.CSRPool, o.KeyType); err != nil {
			return nil, err
		}
	}
	var one func(ctx context.Context, i int) error
	mode := "server"
	switch {
	case o.InProcess:
		mode = "in-process"
		one, err = inProcess(o, pool)
	case o.Baseline:
		mode = "plain-http-baseline"
		var stop func()
		if c, stop, err = startBaseline(o); err != nil {
			return nil, err
		}
		defer stop()
		one, err = overHTTP(ctx, c, o, pool)
	default:
		one, err = overHTTP(ctx, c, o, pool)
	}
	if err != nil {
		return nil, err
	}
	rep := &Report{Mode: mode, Profile: o.Profile, KeyType: o.KeyType, ServerKeys: o.ServerKeys, Concurrency: o.Concurrency}
	var (
		next     atomic.Int64
		errs     atomic.Int64
		firstErr atomic.Value
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
	)
	runCtx := ctx
	var cancel context.CancelFunc = func() {}
	if o.Count == 0 {
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
	}
	defer cancel()
	start := time.Now()
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			for runCtx.Err() == nil {
				i := next.Add(1) - 1
				if o.Count > 0 && i >= int64(o.Count) {
					break
				}
				t0 := time.Now()
				err := one(runCtx, int(i))
				if err != nil {
					if runCtx.Err() != nil && errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
						break
					}
					if errs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	rep.Requests, rep.Errors, rep.Seconds = int64(len(lat)), errs.Load(), elapsed.Seconds()
	rep.RPS = float64(len(lat)) / elapsed.Seconds()
	rep.P50ms, rep.P90ms, rep.P99ms = pct(lat, 50), pct(lat, 90), pct(lat, 99)
	if len(lat) > 0 {
		rep.Maxms = ms(lat[len(lat)-1])
	}
	if v, ok := firstErr.Load().(string); ok {
		rep.FirstError = v
	}
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return ms(sorted[i])
}

func overHTTP(ctx context.Context, c *client.Client, o Options, pool []work) (func(context.Context, int) error, error) {
	var rootPEM []byte
	if _, err := c.Do(ctx, "GET", "/v1/trust-bundle", nil, &rootPEM, nil); err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("the trust bundle holds no certificate")
	}
	anchors := &anchorCache{roots: roots}
	return func(ctx context.Context, i int) error {
		req := issuance.Request{Profile: o.Profile}
		var w work
		if o.ServerKeys {
			req.KeyType = o.KeyType
			req.CommonName = fmt.Sprintf("bench-%d.bench.certgate.internal", i%1000)
		} else {
			w = pool[i%len(pool)]
			req.CSR = w.csrPEM
		}
		var res issued
		if _, err := c.Do(ctx, "POST", "/v1/certificates", req, &res, nil); err != nil {
			return err
		}
		return check(&res, w.pub, anchors)
	}, nil
}

// issued is the part of the issuance response the checks read: decoding
// only these fields keeps the load generator's own cost down on the machine
// it measures.
type issued struct {
	Certificate string `json:"certificate"`
	Chain       string `json:"chain"`
	PrivateKey  string `json:"private_key"`
}

// check parses the leaf, matches its key and verifies it to the root.
func check(res *issued, pub crypto.PublicKey, anchors *anchorCache) error {
	b, _ := pem.Decode([]byte(res.Certificate))
	if b == nil {
		return errors.New("no certificate PEM in the response")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err
	}
	if pub == nil && res.PrivateKey != "" {
		kb, _ := pem.Decode([]byte(res.PrivateKey))
		if kb == nil {
			return errors.New("bad private key PEM")
		}
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return err
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return fmt.Errorf("the returned private key (%T) cannot sign", k)
		}
		pub = signer.Public()
	}
	if !ca.PublicKeysEqual(leaf.PublicKey, pub) {
		return errors.New("the certificate's key is not the request's")
	}
	anchor, err := anchors.forChain(res.Chain)
	if err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: anchor, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	return nil
}

// anchorCache verifies each distinct chain to the root once and then trusts
// its first certificate (the issuer) as the anchor for leaves: every leaf
// still chains to the root, but the load generator does not re-verify the
// same intermediate thousands of times on the machine it is measuring.
type anchorCache struct {
	roots *x509.CertPool
	m     sync.Map // chain PEM → *x509.CertPool
}

func (a *anchorCache) forChain(chainPEM string) (*x509.CertPool, error) {
	if v, ok := a.m.Load(chainPEM); ok {
		return v.(*x509.CertPool), nil
	}
	var certs []*x509.Certificate
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return a.roots, nil
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(certs[0])
	a.m.Store(chainPEM, pool)
	return pool, nil
}

// inProcess is the ceiling: the same CSR checks and x509.CreateCertificate
// with an in-memory CA, no HTTP, no auth, no database.
func inProcess(o Options, pool []work) (func(context.Context, int) error, error) {
	sign, err := newCeilingSigner(o)
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, i int) error {
		csrPEM := ""
		if !o.ServerKeys {
			csrPEM = pool[i%len(pool)].csrPEM
		}
		_, err := sign(csrPEM, o.KeyType)
		return err
	}, nil
}

// ceilingSigner does the signing work of one request with an in-memory CA:
// with a CSR, parse it, check its signature, key and names; without, generate
// a key of keyType. It returns the certificate (DER) and what went into it.
type ceilingSigner func(csrPEM, keyType string) (signed, error)

type signed struct {
	der   []byte
	names *validation.Names
	tmpl  *x509.Certificate
	priv  crypto.Signer // the generated key, without a CSR
}

// ceilingCA is the in-memory CA of the in-process and baseline modes.
type ceilingCA struct {
	issuer *x509.Certificate
	key    crypto.Signer
	root   *x509.Certificate
}

func openCeilingCA() (*ceilingCA, error) {
	dir, err := os.MkdirTemp("", "certgate-bench-ca-")
	if err != nil {
		return nil, err
	}
	local, err := ca.OpenLocal(ca.LocalOptions{Dir: dir})
	os.RemoveAll(dir)
	if err != nil {
		return nil, err
	}
	issuerCert, issuerKey, _ := local.Signer(ca.ServerCA)
	return &ceilingCA{issuer: issuerCert, key: issuerKey, root: local.Root()}, nil
}

func newCeilingSigner(o Options) (ceilingSigner, error) {
	cca, err := openCeilingCA()
	if err != nil {
		return nil, err
	}
	return cca.signer(o)
}

func (cca *ceilingCA) signer(o Options) (ceilingSigner, error) {
	prof := ca.DefaultProfiles(0)[o.Profile]
	if prof == nil {
		return nil, fmt.Errorf("unknown profile %q", o.Profile)
	}
	return func(csrPEM, keyType string) (signed, error) {
		var pub crypto.PublicKey
		var names *validation.Names
		var k crypto.Signer
		if csrPEM == "" {
			var err error
			if keyType == issuance.KeyRSA2048 {
				k, err = rsa.GenerateKey(rand.Reader, 2048)
			} else {
				k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			}
			if err != nil {
				return signed{}, err
			}
			pub = k.Public()
			names = &validation.Names{CommonName: "bench.certgate.internal", DNS: []string{"bench.certgate.internal"}}
		} else {
			csr, err := validation.ParseCSR(csrPEM)
			if err != nil {
				return signed{}, err
			}
			if err := validation.CheckKey("csr", csr.PublicKey); err != nil {
				return signed{}, err
			}
			if names, err = validation.NamesFromCSR(csr, prof.AllowWildcard); err != nil {
				return signed{}, err
			}
			pub = csr.PublicKey
		}
		serial, err := ca.NewSerial()
		if err != nil {
			return signed{}, err
		}
		now := time.Now()
		tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names.CommonName}, DNSNames: names.DNS,
			NotBefore: now.Add(-ca.Backdate), NotAfter: now.Add(prof.MaxValidity - ca.Backdate), KeyUsage: prof.KeyUsage,
			ExtKeyUsage: prof.ExtKeyUsage, BasicConstraintsValid: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, cca.issuer, pub, cca.key)
		return signed{der: der, names: names, tmpl: tmpl, priv: k}, err
	}, nil
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// Print writes the report.
func Print(w io.Writer, r *Report) { fmt.Fprint(w, r.String()) }
