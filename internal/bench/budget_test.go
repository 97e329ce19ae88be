package bench

import (
	"crypto/x509"
	"testing"
)

// BenchmarkCryptoBudget measures, in one run, the signing work of
// --in-process and the two certificate checks a served request adds to it:
// the server's x509.Verify of every leaf before it is returned, and the load
// generator's parse-and-verify of every certificate it receives. Their ratio
// bounds what any server can reach against the in-process ceiling on this
// machine, before a single byte of HTTP, TLS, JSON, auth or database work:
//
//	go test ./internal/bench -run '^$' -bench CryptoBudget -benchtime 3s
func BenchmarkCryptoBudget(b *testing.B) {
	cca, err := openCeilingCA()
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pregenerate(64, "")
	if err != nil {
		b.Fatal(err)
	}
	sign, err := cca.signer(Options{Profile: "server"})
	if err != nil {
		b.Fatal(err)
	}
	s, err := sign(pool[0].csrPEM, "")
	if err != nil {
		b.Fatal(err)
	}
	anchor := x509.NewCertPool()
	anchor.AddCert(cca.issuer)
	leafPEM := certPEM(s.der)
	roots := x509.NewCertPool()
	roots.AddCert(cca.root)
	anchors := &anchorCache{roots: roots}
	res := &issued{Certificate: leafPEM, Chain: certPEM(cca.issuer.Raw)}

	b.Run("in-process-signing", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := sign(pool[i%len(pool)].csrPEM, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("server-leaf-verify", func(b *testing.B) {
		leaf, err := x509.ParseCertificate(s.der)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: anchor, CurrentTime: leaf.NotBefore.Add(1), KeyUsages: leaf.ExtKeyUsage}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client-check", func(b *testing.B) {
		for b.Loop() {
			if err := check(res, pool[0].pub, anchors); err != nil {
				b.Fatal(err)
			}
		}
	})
}
