package validation

import (
	"crypto"
	"crypto/dsa"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"
	"strings"

	"github.com/certgate/certgate/internal/apierror"
)

// Key policy bounds.
const (
	MinRSABits = 2048
	// MaxRSABits bounds the cost of every signature check a relying party
	// makes with the key; nothing legitimate needs more.
	MaxRSABits = 8192
	// RSAExponent is the only public exponent accepted. Like Boulder, we do
	// not accept other odd exponents: 65537 is what every toolkit generates,
	// e=3 invites the classic padding attacks, and some verifiers (Windows
	// CNG, FIPS modules) refuse anything else, so a certificate for another
	// exponent would be one we issued but nobody could use reliably.
	RSAExponent = 65537

	// fermatRounds is Boulder's choice: it catches primes generated too
	// close together (CVE-2022-26320) at negligible cost.
	fermatRounds = 100
)

// Server-side key types (the request's "key_type").
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA2048   = "rsa-2048"
)

// ParseKeyType validates a request's key_type for server-side key generation;
// empty means the default, ECDSA P-256.
func ParseKeyType(s string) (string, error) {
	switch s {
	case "":
		return KeyECDSAP256, nil
	case KeyECDSAP256, KeyRSA2048:
		return s, nil
	}
	return "", apierror.Field("key_type", "%s is not offered; use %q (default) or %q", show(s), KeyECDSAP256, KeyRSA2048)
}

// CheckKey is the key policy: RSA of MinRSABits..MaxRSABits bits with
// exponent 65537 and a modulus without obvious weaknesses, or ECDSA on P-256
// or P-384 with a valid point. field names the request field the key came
// from ("csr" or "key_type") for the error detail.
func CheckKey(field string, pub crypto.PublicKey) error {
	var reason string
	switch k := pub.(type) {
	case nil:
		reason = "has no public key"
	case *rsa.PublicKey:
		reason = checkRSA(k)
	case *ecdsa.PublicKey:
		reason = checkECDSA(k)
	case ed25519.PublicKey:
		reason = "has an Ed25519 key, which is not accepted (not every CA backend or client supports it); use ECDSA P-256 or P-384, or RSA with at least 2048 bits"
	case *dsa.PublicKey:
		reason = "has a DSA key, which is not accepted; use ECDSA P-256 or P-384, or RSA with at least 2048 bits"
	case *ecdh.PublicKey:
		reason = "has a key-agreement (ECDH) key, which cannot sign; use ECDSA P-256 or P-384, or RSA with at least 2048 bits"
	default:
		reason = fmt.Sprintf("has an unsupported key type %T; use ECDSA P-256 or P-384, or RSA with at least 2048 bits", pub)
	}
	if reason == "" {
		return nil
	}
	return apierror.Field(field, "the key %s", reason)
}

func checkRSA(k *rsa.PublicKey) string {
	if k == nil || k.N == nil || k.N.Sign() <= 0 {
		return "is an RSA key without a modulus"
	}
	switch bits := k.N.BitLen(); {
	case bits < MinRSABits:
		return fmt.Sprintf("is RSA with %d bits; at least %d are required", bits, MinRSABits)
	case bits > MaxRSABits:
		return fmt.Sprintf("is RSA with %d bits; at most %d are accepted", bits, MaxRSABits)
	}
	if k.E != RSAExponent {
		return fmt.Sprintf("is RSA with public exponent %d; only %d is accepted", k.E, RSAExponent)
	}
	// A modulus with a small factor (including an even one) or with its
	// two primes close together is factorable; Boulder's goodkey checks
	// the same cheap cases.
	if new(big.Int).GCD(nil, nil, k.N, smallPrimesProduct).Cmp(bigOne) != 0 {
		return "is RSA with a modulus that has a small prime factor"
	}
	if fermatFactorable(k.N, fermatRounds) {
		return "is RSA with a modulus that can be factored (its primes are too close together)"
	}
	return ""
}

func checkECDSA(k *ecdsa.PublicKey) string {
	if k == nil || k.Curve == nil {
		return "is an ECDSA key without a curve"
	}
	switch k.Curve {
	case elliptic.P256(), elliptic.P384():
	case elliptic.P224(), elliptic.P521():
		return fmt.Sprintf("is ECDSA on %s; only P-256 and P-384 are accepted", k.Curve.Params().Name)
	default:
		return "is ECDSA on an unsupported curve; only P-256 and P-384 are accepted"
	}
	// Bytes would dereference missing coordinates rather than refuse them.
	if k.X == nil || k.Y == nil {
		return "is an ECDSA key without a point"
	}
	// A point off the curve or at infinity makes a key nobody can verify
	// with; certifying it would only hand the client a useless certificate
	// (or, with a careless verifier, an invalid-curve attack).
	if _, err := k.Bytes(); err != nil {
		return fmt.Sprintf("is not a valid point on %s", k.Curve.Params().Name)
	}
	return ""
}

// KeyAlgorithm names a public key as the API reports it: "ecdsa-p256",
// "ecdsa-p384", "rsa-<bits>", and descriptive names for keys CheckKey refuses.
func KeyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k != nil && k.N != nil {
			return fmt.Sprintf("rsa-%d", k.N.BitLen())
		}
		return "rsa"
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "ecdsa"
		}
		switch k.Curve {
		case elliptic.P224(), elliptic.P256(), elliptic.P384(), elliptic.P521():
			return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
		}
		return "ecdsa-unknown"
	case ed25519.PublicKey:
		return "ed25519"
	case *dsa.PublicKey:
		return "dsa"
	case *ecdh.PublicKey:
		if k == nil {
			return "ecdh"
		}
		return "ecdh-" + strings.ToLower(strings.ReplaceAll(fmt.Sprint(k.Curve()), "-", ""))
	case nil:
		return "none"
	default:
		return "unknown"
	}
}

var bigOne = big.NewInt(1)

// smallPrimesProduct is the product of the primes below 752, Boulder's bound:
// one GCD then finds any small factor.
var smallPrimesProduct = func() *big.Int {
	const limit = 752
	composite := make([]bool, limit)
	p := big.NewInt(1)
	for i := 2; i < limit; i++ {
		if composite[i] {
			continue
		}
		p.Mul(p, big.NewInt(int64(i)))
		for j := i * i; j < limit; j += i {
			composite[j] = true
		}
	}
	return p
}()

// fermatFactorable tries Fermat's method from ceil(sqrt(n)) for a few rounds:
// if n = p*q with |p-q| small, a*a - n is a perfect square early on.
func fermatFactorable(n *big.Int, rounds int) bool {
	a := new(big.Int).Sqrt(n)
	b2 := new(big.Int).Mul(a, a)
	if b2.Cmp(n) == 0 {
		return true
	}
	a.Add(a, bigOne)
	b2.Mul(a, a).Sub(b2, n)
	b := new(big.Int)
	sq := new(big.Int)
	for i := 0; i < rounds; i++ {
		b.Sqrt(b2)
		if sq.Mul(b, b).Cmp(b2) == 0 {
			return true
		}
		// (a+1)^2 - n = (a^2 - n) + 2a + 1
		b2.Add(b2, a).Add(b2, a).Add(b2, bigOne)
		a.Add(a, bigOne)
	}
	return false
}
