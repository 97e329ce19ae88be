package revocation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/crypto/ocsp"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/store"
)

// clock is an adjustable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type fixture struct {
	st    *store.Store
	local *ca.Local
	clk   *clock
}

var pgSeq atomic.Int64

// pgDSN makes a fresh schema on the test PostgreSQL server (the same set-up
// as servertest.PostgresDSN, which this package cannot import).
func pgDSN(t *testing.T) string {
	base := os.Getenv("CERTGATE_TEST_POSTGRES_DSN")
	if base == "" {
		t.Skip("CERTGATE_TEST_POSTGRES_DSN is not set: skipping the PostgreSQL variant")
	}
	schema := fmt.Sprintf("cg_rev_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, pgSeq.Add(1))
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", base); err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func drivers(t *testing.T, f func(t *testing.T, open func(t *testing.T) *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		f(t, func(t *testing.T) *store.Store {
			st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgDSN(t)
		f(t, func(t *testing.T) *store.Store {
			st, err := store.Open(context.Background(), store.Options{Driver: "postgres", DSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		})
	})
}

func newFixture(t *testing.T, st *store.Store) *fixture {
	t.Helper()
	if err := st.MigrateRevocation(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := ca.OpenLocal(ca.LocalOptions{Dir: filepath.Join(t.TempDir(), "ca")})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, local: l, clk: newClock()}
}

func (f *fixture) service(interval time.Duration) *Service {
	return New(Options{Store: f.st, Backend: f.local, Signers: f.local, Now: f.clk.Now, CheckInterval: interval})
}

// issue signs a real leaf with the local CA and records it as issued.
func (f *fixture) issue(t *testing.T, caName string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := ca.NewSerial()
	prof := ca.DefaultProfiles(0)[ca.ProfileServer]
	if caName == ca.ClientCA {
		prof = ca.DefaultProfiles(0)[ca.ProfileClient]
	}
	now := time.Now()
	res, err := f.local.Sign(context.Background(), &ca.SignRequest{Profile: prof, CA: caName, PublicKey: key.Public(),
		Subject: pkix.Name{CommonName: "t.example"}, DNSNames: []string{"t.example"}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	s := ca.FormatSerial(serial)
	row := &store.Certificate{Serial: &s, CA: caName, Profile: prof.Name, CommonName: "t.example", Status: store.StatusIssued,
		NotBefore: res.Leaf.NotBefore, NotAfter: res.Leaf.NotAfter, Requester: "test"}
	if err := f.st.DB().Create(row).Error; err != nil {
		t.Fatal(err)
	}
	return res.Leaf
}

func (f *fixture) revoke(t *testing.T, c *x509.Certificate, reason string) {
	t.Helper()
	if _, err := f.st.Revoke(context.Background(), ca.FormatSerial(c.SerialNumber), reason, f.clk.Now(), nil); err != nil {
		t.Fatal(err)
	}
}

func parseCRL(t *testing.T, f *fixture, caName string, c *CRL) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatal(err)
	}
	issuer, _, _ := f.local.Signer(caName)
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	if rl.Number.Int64() != c.Number {
		t.Fatalf("number %v, want %d", rl.Number, c.Number)
	}
	return rl
}

func entries(rl *x509.RevocationList) map[string]int {
	out := map[string]int{}
	for _, e := range rl.RevokedCertificateEntries {
		out[ca.FormatSerial(e.SerialNumber)] = e.ReasonCode
	}
	return out
}

func TestParseReason(t *testing.T) {
	for in, want := range map[string]int{"": 0, "unspecified": 0, "key_compromise": 1, "KEY_COMPROMISE": 1, " superseded ": 4,
		"ca_compromise": 2, "affiliation_changed": 3, "cessation_of_operation": 5, "privilege_withdrawn": 9, "aa_compromise": 10} {
		_, got, err := ParseReason(in)
		if err != nil || got != want {
			t.Errorf("ParseReason(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"certificate_hold", "remove_from_crl", "bogus", "6"} {
		if _, _, err := ParseReason(bad); err == nil {
			t.Errorf("ParseReason(%q) accepted", bad)
		}
	}
}

func TestCRLLifecycle(t *testing.T) {
	drivers(t, func(t *testing.T, open func(t *testing.T) *store.Store) {
		ctx := context.Background()
		f := newFixture(t, open(t))
		svc := f.service(time.Hour)
		a := f.issue(t, ca.ServerCA)
		b := f.issue(t, ca.ServerCA)
		other := f.issue(t, ca.ClientCA)

		c1, err := svc.CRL(ctx, ca.ServerCA)
		if err != nil {
			t.Fatal(err)
		}
		rl := parseCRL(t, f, ca.ServerCA, c1)
		if len(rl.RevokedCertificateEntries) != 0 || c1.Number != 1 {
			t.Fatalf("first CRL: number %d, %d entries", c1.Number, len(rl.RevokedCertificateEntries))
		}
		if got := rl.NextUpdate.Sub(rl.ThisUpdate); got != CRLValidity {
			t.Fatalf("validity %v", got)
		}
		// Cached while nothing changes.
		if c, _ := svc.CRL(ctx, ca.ServerCA); c != c1 {
			t.Fatal("CRL regenerated without a change")
		}

		// A revocation through the service's own path shows up at once.
		f.revoke(t, a, "key_compromise")
		svc.Revoked(ca.ServerCA, ca.FormatSerial(a.SerialNumber))
		c2, _ := svc.CRL(ctx, ca.ServerCA)
		if c2.Number <= c1.Number {
			t.Fatalf("number did not grow: %d → %d", c1.Number, c2.Number)
		}
		if got := entries(parseCRL(t, f, ca.ServerCA, c2)); len(got) != 1 || got[ca.FormatSerial(a.SerialNumber)] != ReasonKeyCompromise {
			t.Fatalf("entries %v", got)
		}

		// A revocation by "another replica" (straight to the database) is
		// seen once the check interval has passed, not before.
		f.revoke(t, b, "superseded")
		f.revoke(t, other, "unspecified")
		if c, _ := svc.CRL(ctx, ca.ServerCA); c != c2 {
			t.Fatal("stamp re-read before the interval")
		}
		f.clk.Advance(time.Hour)
		c3, _ := svc.CRL(ctx, ca.ServerCA)
		got := entries(parseCRL(t, f, ca.ServerCA, c3))
		if c3.Number <= c2.Number || len(got) != 2 || got[ca.FormatSerial(b.SerialNumber)] != ReasonSuperseded {
			t.Fatalf("after remote revocation: number %d, entries %v", c3.Number, got)
		}
		// client-ca has its own CRL with its own entry and numbering.
		cc, _ := svc.CRL(ctx, ca.ClientCA)
		if got := entries(parseCRL(t, f, ca.ClientCA, cc)); len(got) != 1 || cc.Number != 1 {
			t.Fatalf("client-ca CRL: number %d entries %v", cc.Number, got)
		}

		// Near the end of its validity the CRL is renewed.
		f.clk.Advance(CRLValidity - CRLRefreshBefore + time.Minute)
		c4, _ := svc.CRL(ctx, ca.ServerCA)
		if c4.Number <= c3.Number || !c4.ThisUpdate.After(c3.ThisUpdate) {
			t.Fatalf("not renewed: %d → %d", c3.Number, c4.Number)
		}

		// A restart (new service on the same database) continues the
		// numbering; with nothing changed it serves the stored CRL.
		svc2 := f.service(time.Hour)
		c5, _ := svc2.CRL(ctx, ca.ServerCA)
		if c5.Number != c4.Number || string(c5.DER) != string(c4.DER) {
			t.Fatalf("restart: number %d, want the stored %d", c5.Number, c4.Number)
		}
		f.revoke(t, f.issue(t, ca.ServerCA), "cessation_of_operation")
		svc2.Revoked(ca.ServerCA, "")
		c6, _ := svc2.CRL(ctx, ca.ServerCA)
		if c6.Number != c4.Number+1 {
			t.Fatalf("after restart: number %d, want %d", c6.Number, c4.Number+1)
		}
	})
}

func TestCRLConcurrentReplicas(t *testing.T) {
	drivers(t, func(t *testing.T, open func(t *testing.T) *store.Store) {
		ctx := context.Background()
		f := newFixture(t, open(t))
		const replicas = 6
		svcs := make([]*Service, replicas)
		for i := range svcs {
			svcs[i] = f.service(time.Millisecond)
		}
		for round := 0; round < 3; round++ {
			f.revoke(t, f.issue(t, ca.ServerCA), "superseded")
			f.clk.Advance(time.Second)
			var wg sync.WaitGroup
			got := make([]*CRL, replicas)
			errs := make([]error, replicas)
			for i := range svcs {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					got[i], errs[i] = svcs[i].CRL(ctx, ca.ServerCA)
				}(i)
			}
			wg.Wait()
			for i := range got {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if got[i].Number != got[0].Number || string(got[i].DER) != string(got[0].DER) {
					t.Fatalf("round %d: replicas serve different CRLs (%d vs %d)", round, got[i].Number, got[0].Number)
				}
			}
			if n := len(parseCRL(t, f, ca.ServerCA, got[0]).RevokedCertificateEntries); n != round+1 {
				t.Fatalf("round %d: %d entries", round, n)
			}
			if got[0].Number != int64(round+1) {
				t.Fatalf("round %d: number %d (one signature per change expected)", round, got[0].Number)
			}
		}
	})
}

func ocspReq(t *testing.T, serial *big.Int, issuer *x509.Certificate, h crypto.Hash) []byte {
	t.Helper()
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	hh := h.New()
	hh.Write(issuer.RawSubject)
	nameHash := hh.Sum(nil)
	hh.Reset()
	hh.Write(spki.PublicKey.RightAlign())
	der, err := (&ocsp.Request{HashAlgorithm: h, IssuerNameHash: nameHash, IssuerKeyHash: hh.Sum(nil), SerialNumber: serial}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestOCSP(t *testing.T) {
	drivers(t, func(t *testing.T, open func(t *testing.T) *store.Store) {
		ctx := context.Background()
		f := newFixture(t, open(t))
		svc := f.service(time.Hour)
		issuer, _, _ := f.local.Signer(ca.ServerCA)
		leaf := f.issue(t, ca.ServerCA)

		ask := func(caName string, der []byte, cert, iss *x509.Certificate) (*ocsp.Response, *OCSPAnswer) {
			t.Helper()
			ans := svc.OCSP(ctx, caName, der)
			resp, err := ocsp.ParseResponseForCert(ans.DER, cert, iss)
			if err != nil {
				return nil, ans
			}
			return resp, ans
		}
		der, _ := ocsp.CreateRequest(leaf, issuer, nil)
		resp, ans := ask(ca.ServerCA, der, leaf, issuer)
		if resp == nil || resp.Status != ocsp.Good || ans.Cached {
			t.Fatalf("good: %+v %+v", resp, ans)
		}
		if d := resp.NextUpdate.Sub(resp.ThisUpdate); d != OCSPValidity {
			t.Fatalf("validity %v", d)
		}
		if _, ans := ask(ca.ServerCA, der, leaf, issuer); !ans.Cached {
			t.Fatal("second answer not cached")
		}
		// SHA-256 CertIDs work too and are answered in kind.
		der256, _ := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
		if resp, _ := ask(ca.ServerCA, der256, leaf, issuer); resp == nil || resp.Status != ocsp.Good || resp.IssuerHash != crypto.SHA256 {
			t.Fatalf("sha256: %+v", resp)
		}

		// Revoked here: the cached good answer is dropped at once.
		f.revoke(t, leaf, "key_compromise")
		svc.Revoked(ca.ServerCA, ca.FormatSerial(leaf.SerialNumber))
		resp, _ = ask(ca.ServerCA, der, leaf, issuer)
		if resp == nil || resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.KeyCompromise || resp.RevokedAt.IsZero() {
			t.Fatalf("revoked: %+v", resp)
		}

		// Revoked elsewhere: seen after the check interval.
		leaf2 := f.issue(t, ca.ServerCA)
		der2, _ := ocsp.CreateRequest(leaf2, issuer, nil)
		if resp, _ := ask(ca.ServerCA, der2, leaf2, issuer); resp == nil || resp.Status != ocsp.Good {
			t.Fatal("leaf2 not good")
		}
		f.revoke(t, leaf2, "superseded")
		if resp, _ := ask(ca.ServerCA, der2, leaf2, issuer); resp.Status != ocsp.Good {
			t.Fatal("expected the cached good answer within the interval")
		}
		f.clk.Advance(time.Hour + time.Second)
		if resp, _ := ask(ca.ServerCA, der2, leaf2, issuer); resp == nil || resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.Superseded {
			t.Fatalf("remote revocation not seen: %+v", resp)
		}

		// Unknown: a serial never issued, and a serial of another CA.
		never, _ := ca.NewSerial()
		resp, _ = ask(ca.ServerCA, ocspReq(t, never, issuer, crypto.SHA1), nil, issuer)
		if resp == nil || resp.Status != ocsp.Unknown || resp.SerialNumber.Cmp(never) != 0 {
			t.Fatalf("unknown: %+v", resp)
		}
		client := f.issue(t, ca.ClientCA)
		if resp, _ := ask(ca.ServerCA, ocspReq(t, client.SerialNumber, issuer, crypto.SHA1), nil, issuer); resp.Status != ocsp.Unknown {
			t.Fatalf("another CA's serial: %v", resp.Status)
		}

		// A request naming another issuer: unauthorized.
		clientCA, _, _ := f.local.Signer(ca.ClientCA)
		derC, _ := ocsp.CreateRequest(client, clientCA, nil)
		_, err := ocsp.ParseResponse(svc.OCSP(ctx, ca.ServerCA, derC).DER, nil)
		if re, ok := err.(ocsp.ResponseError); !ok || re.Status != ocsp.Unauthorized {
			t.Fatalf("wrong issuer: %v", err)
		}
		// Malformed.
		_, err = ocsp.ParseResponse(svc.OCSP(ctx, ca.ServerCA, []byte("nonsense")).DER, nil)
		if re, ok := err.(ocsp.ResponseError); !ok || re.Status != ocsp.Malformed {
			t.Fatalf("malformed: %v", err)
		}

		// The root answers for the local intermediates it signed.
		root, _, _ := f.local.Signer(ca.Root)
		serverCA, _, _ := f.local.Signer(ca.ServerCA)
		derR, _ := ocsp.CreateRequest(serverCA, root, nil)
		if resp, _ := ask(ca.Root, derR, serverCA, root); resp == nil || resp.Status != ocsp.Good {
			t.Fatalf("root for server-ca: %+v", resp)
		}
	})
}

func TestDecodeGETRequest(t *testing.T) {
	der := make([]byte, 90)
	for i := range der {
		der[i] = byte(i*37 + 250) // produces '+' and '/' in base64
	}
	std := base64.StdEncoding.EncodeToString(der)
	for _, in := range []string{std, url.PathEscape(std), url.QueryEscape(std), base64.RawURLEncoding.EncodeToString(der)} {
		if got := decodeGETRequest(in); string(got) != string(der) {
			t.Errorf("decode %q failed", in)
		}
	}
	if decodeGETRequest("") != nil || decodeGETRequest("!!!") != nil {
		t.Error("garbage decoded")
	}
}
