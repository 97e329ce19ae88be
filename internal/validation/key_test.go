package validation

import (
	"crypto"
	"crypto/dsa"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"
)

// randomModulus returns an odd number of exactly bits bits without small
// factors: key policy cannot tell it from a real modulus, and it is far
// cheaper than generating 4096- or 8192-bit keys.
func randomModulus(t *testing.T, bits int) *big.Int {
	t.Helper()
	limit := new(big.Int).Lsh(bigOne, uint(bits))
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			t.Fatal(err)
		}
		n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
		if new(big.Int).GCD(nil, nil, n, smallPrimesProduct).Cmp(bigOne) == 0 {
			return n
		}
	}
}

// bigPrime returns a prime of 1024 bits whose two top bits are set, so that
// the product of two of them has exactly 2048 bits and only the property
// under test can make key policy object.
func bigPrime(t *testing.T, from *big.Int) *big.Int {
	t.Helper()
	p := new(big.Int).Set(from)
	if p.Sign() == 0 {
		x, err := rand.Int(rand.Reader, new(big.Int).Lsh(bigOne, 1024))
		if err != nil {
			t.Fatal(err)
		}
		p = x.SetBit(x, 1023, 1).SetBit(x, 1022, 1)
	}
	p.SetBit(p, 0, 1)
	for !p.ProbablyPrime(20) {
		p.Add(p, big.NewInt(2))
	}
	return p
}

// closePrimes returns p*q with q the next prime after p, which Fermat's
// method factors at once.
func closePrimes(t *testing.T) *big.Int {
	t.Helper()
	p := bigPrime(t, new(big.Int))
	q := bigPrime(t, new(big.Int).Add(p, big.NewInt(2)))
	return new(big.Int).Mul(p, q)
}

func rsaPub(n *big.Int, e int) *rsa.PublicKey { return &rsa.PublicKey{N: n, E: e} }

func TestCheckKey(t *testing.T) {
	p256 := key("p256").Public().(*ecdsa.PublicKey)
	p256Params := *elliptic.P256().Params()
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	real2048 := key("rsa2048").Public().(*rsa.PublicKey)
	oddPrime := bigPrime(t, new(big.Int))

	tests := []struct {
		name   string
		pub    crypto.PublicKey
		reason string // empty: accepted
	}{
		{name: "ECDSA P-256", pub: p256},
		{name: "ECDSA P-384", pub: key("p384").Public()},
		{name: "RSA 2048 generated", pub: real2048},
		{name: "RSA 2048", pub: rsaPub(randomModulus(t, 2048), 65537)},
		{name: "RSA 3072", pub: rsaPub(randomModulus(t, 3072), 65537)},
		{name: "RSA 4096", pub: rsaPub(randomModulus(t, 4096), 65537)},
		{name: "RSA 8192", pub: rsaPub(randomModulus(t, 8192), 65537)},

		{name: "nil", pub: nil, reason: "no public key"},
		{name: "typed nil RSA", pub: (*rsa.PublicKey)(nil), reason: "without a modulus"},
		{name: "RSA without modulus", pub: &rsa.PublicKey{E: 65537}, reason: "without a modulus"},
		{name: "RSA 1024 generated", pub: key("rsa1024").Public(), reason: "1024 bits; at least 2048"},
		{name: "RSA 2047 generated", pub: key("rsa2047").Public(), reason: "2047 bits"},
		{name: "RSA 8193", pub: rsaPub(randomModulus(t, 8193), 65537), reason: "at most 8192"},
		{name: "RSA exponent 3", pub: rsaPub(real2048.N, 3), reason: "exponent 3; only 65537"},
		{name: "RSA exponent 65539", pub: rsaPub(real2048.N, 65539), reason: "exponent 65539"},
		{name: "RSA exponent 1", pub: rsaPub(real2048.N, 1), reason: "exponent 1"},
		{name: "RSA even modulus", pub: rsaPub(new(big.Int).SetBit(randomModulus(t, 2048), 0, 0), 65537), reason: "small prime factor"},
		{name: "RSA small factor", pub: rsaPub(new(big.Int).Mul(randomModulus(t, 2040), big.NewInt(751)), 65537), reason: "small prime factor"},
		{name: "RSA close primes", pub: rsaPub(closePrimes(t), 65537), reason: "can be factored"},
		{name: "RSA perfect square", pub: rsaPub(new(big.Int).Mul(oddPrime, oddPrime), 65537), reason: "can be factored"},
		{name: "RSA value instead of pointer", pub: *real2048, reason: "unsupported key type"},

		{name: "ECDSA P-224", pub: key("p224").Public(), reason: "P-224; only P-256 and P-384"},
		{name: "ECDSA P-521", pub: key("p521").Public(), reason: "P-521"},
		{name: "ECDSA custom curve named P-256", pub: &ecdsa.PublicKey{Curve: &p256Params, X: p256.X, Y: p256.Y}, reason: "unsupported curve"},
		{name: "ECDSA point not on curve", pub: &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}, reason: "not a valid point"},
		{name: "ECDSA point at infinity", pub: &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int), Y: new(big.Int)}, reason: "not a valid point"},
		{name: "ECDSA coordinate not reduced", pub: &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).Add(p256.X, elliptic.P256().Params().P), Y: p256.Y}, reason: "not a valid point"},
		{name: "ECDSA without point", pub: &ecdsa.PublicKey{Curve: elliptic.P256()}, reason: "without a point"},
		{name: "ECDSA without curve", pub: &ecdsa.PublicKey{}, reason: "without a curve"},
		{name: "typed nil ECDSA", pub: (*ecdsa.PublicKey)(nil), reason: "without a curve"},
		{name: "Ed25519", pub: key("ed25519").Public(), reason: "Ed25519"},
		{name: "DSA", pub: &dsa.PublicKey{}, reason: "DSA"},
		{name: "X25519", pub: x25519.PublicKey(), reason: "cannot sign"},
		{name: "not a key", pub: "hello", reason: "unsupported key type string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKey("key_type", tt.pub)
			if tt.reason == "" {
				wantOK(t, err)
				return
			}
			wantValidation(t, err, "key_type", tt.reason)
			// The field is the caller's, not a fixed one.
			wantValidation(t, CheckKey("csr", tt.pub), "csr", tt.reason)
		})
	}
}

func TestKeyAlgorithm(t *testing.T) {
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pub  crypto.PublicKey
		want string
	}{
		{"P-256", key("p256").Public(), "ecdsa-p256"},
		{"P-384", key("p384").Public(), "ecdsa-p384"},
		{"P-224", key("p224").Public(), "ecdsa-p224"},
		{"P-521", key("p521").Public(), "ecdsa-p521"},
		{"RSA 2048", key("rsa2048").Public(), "rsa-2048"},
		{"RSA 2047", key("rsa2047").Public(), "rsa-2047"},
		{"RSA 3072", rsaPub(randomModulus(t, 3072), 65537), "rsa-3072"},
		{"RSA 4096", rsaPub(randomModulus(t, 4096), 65537), "rsa-4096"},
		{"RSA without modulus", &rsa.PublicKey{}, "rsa"},
		{"ECDSA without curve", &ecdsa.PublicKey{}, "ecdsa"},
		{"Ed25519", key("ed25519").Public(), "ed25519"},
		{"Ed25519 private is not a public key", key("ed25519"), "unknown"},
		{"DSA", &dsa.PublicKey{}, "dsa"},
		{"X25519", x25519.PublicKey(), "ecdh-x25519"},
		{"nil", nil, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KeyAlgorithm(tt.pub); got != tt.want {
				t.Errorf("KeyAlgorithm = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseKeyType(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", KeyECDSAP256}, {"ecdsa-p256", KeyECDSAP256}, {"rsa-2048", KeyRSA2048},
	} {
		t.Run("ok "+tt.in, func(t *testing.T) {
			got, err := ParseKeyType(tt.in)
			wantOK(t, err)
			if got != tt.want {
				t.Errorf("ParseKeyType(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	for _, in := range []string{"ecdsa-p384", "rsa-4096", "RSA-2048", "ed25519", " ecdsa-p256"} {
		t.Run("refused "+in, func(t *testing.T) {
			_, err := ParseKeyType(in)
			wantValidation(t, err, "key_type", "not offered")
		})
	}
}

// Sanity check of the helpers: a generated key's modulus passes, so the
// refusals above are about the property under test.
func TestFermatAcceptsGeneratedKeys(t *testing.T) {
	for _, name := range []string{"rsa1024", "rsa2047", "rsa2048"} {
		if fermatFactorable(key(name).Public().(*rsa.PublicKey).N, fermatRounds) {
			t.Errorf("%s flagged as Fermat-factorable", name)
		}
	}
	if !fermatFactorable(closePrimes(t), fermatRounds) {
		t.Errorf("close primes not flagged")
	}
	if !fermatFactorable(big.NewInt(7*11), fermatRounds) {
		t.Errorf("77 not flagged")
	}
}
