package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/ca/pcatest"
)

// FuzzParsePCAChain feeds GetCertificate's two strings to the parser that
// turns them into a leaf and a chain. It must never panic, and whatever it
// accepts must be a chain that verifies: the leaf is the one certificate
// sent, each chain certificate was sent and signs the one before it, the
// last is signed by the trusted root, the root itself is not in the chain,
// and x509.Verify agrees.
//
//	go test ./internal/ca -run '^$' -fuzz FuzzParsePCAChain -fuzztime 60s -fuzzminimizetime 3s
func FuzzParsePCAChain(f *testing.F) {
	h := newPCAHarness(f, nil, nil)
	other := newDouble(f, pcatest.WithFreshKeys())
	root := h.dbl.Root()

	// Seeds are GetCertificate answers exactly as the double (like PCA)
	// sends them, then rearranged and broken.
	var mu sync.Mutex
	type answer struct{ cert, chain string }
	var answers []answer
	h.dbl.SetCertificateRewrite(func(cert, chain string) (string, string) {
		mu.Lock()
		answers = append(answers, answer{cert, chain})
		mu.Unlock()
		return cert, chain
	})
	for _, profile := range []string{ProfileClient, ProfileServer, ProfileMachine} {
		if _, err := h.p.Sign(context.Background(), signRequest(f, profile)); err != nil {
			f.Fatal(err)
		}
	}
	const end = "-----END CERTIFICATE-----"
	for _, a := range answers {
		inter, rootPEM, _ := strings.Cut(a.chain, end+"\n")
		inter += end
		f.Add(a.cert, a.chain)
		f.Add(a.cert, rootPEM+"\n"+inter)       // root first
		f.Add(a.cert, inter)                    // root left out
		f.Add(a.cert, rootPEM)                  // intermediate left out
		f.Add(a.cert, "")                       // no chain
		f.Add(a.cert+"\n"+inter, a.chain)       // two certificates where one belongs
		f.Add(inter, rootPEM)                   // a CA certificate as the "leaf"
		f.Add(a.cert, a.chain+"\n"+a.chain)     // duplicates
		f.Add(a.cert, strings.ToLower(a.chain)) // mangled base64
		f.Add(a.cert[:len(a.cert)/2], a.chain)  // truncated
		f.Add(a.cert, inter+"\n"+other.CACertPEM(pcatest.RoleRoot))
		f.Add(a.cert, other.CACertPEM(pcatest.RoleServerCA)+"\n"+rootPEM)
		f.Add(a.cert+"\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", a.chain)
	}
	f.Add(h.dbl.CACertPEM(pcatest.RoleRoot), "")
	f.Add("", "")
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", "garbage")

	rootPool := x509.NewCertPool()
	rootPool.AddCert(root)
	f.Fuzz(func(t *testing.T, leafPEM, chainPEM string) {
		leaf, chain, err := ParsePCAChain(leafPEM, chainPEM, root)
		if err != nil {
			if leaf != nil || chain != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		sentLeaf := lenientCerts(leafPEM)
		if len(sentLeaf) != 1 || !sentLeaf[0].Equal(leaf) {
			t.Fatalf("accepted a leaf that is not the one certificate sent (%d sent)", len(sentLeaf))
		}
		sent := lenientCerts(chainPEM)
		cur := leaf
		for i, c := range chain {
			if c.Equal(root) {
				t.Fatalf("chain[%d] is the root", i)
			}
			found := false
			for _, s := range sent {
				found = found || s.Equal(c)
			}
			if !found {
				t.Fatalf("chain[%d] (%s) was not in the answer", i, c.Subject)
			}
			if err := cur.CheckSignatureFrom(c); err != nil {
				t.Fatalf("chain[%d] does not sign the certificate before it: %v", i, err)
			}
			cur = c
		}
		if err := cur.CheckSignatureFrom(root); err != nil {
			t.Fatalf("the chain does not end at the root: %v", err)
		}
		inter := x509.NewCertPool()
		for _, c := range chain {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: inter, CurrentTime: leaf.NotBefore.Add(time.Second),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("accepted a chain x509.Verify refuses: %v", err)
		}
	})
}

// lenientCerts parses every CERTIFICATE block it can, skipping the rest.
func lenientCerts(s string) []*x509.Certificate {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
}
