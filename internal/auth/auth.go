// Package auth turns credentials (bearer tokens, mTLS client certificates)
// into principals. Tokens are kept only as SHA-256 hashes and compared in
// constant time; a principal carries its compiled policy.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/policy"
)

// TokenFileName is the bootstrap admin token's file in the data directory.
const TokenFileName = "admin.token"

// AdminName names the bootstrap principal.
const AdminName = "admin"

// Principal is an authenticated caller.
type Principal struct {
	Name   string
	Policy *policy.Policy
}

type tokenEntry struct {
	hash [32]byte
	p    *Principal
}

// Authenticator is immutable after New and safe for concurrent use.
type Authenticator struct {
	tokens   []tokenEntry
	subjects map[string]*Principal
}

// New builds the principals from config, plus the bootstrap admin when a
// token is given.
func New(cfg config.Auth, bootstrapToken string) (*Authenticator, error) {
	a := &Authenticator{subjects: map[string]*Principal{}}
	if bootstrapToken != "" {
		a.tokens = append(a.tokens, tokenEntry{hash: sha256.Sum256([]byte(bootstrapToken)), p: &Principal{Name: AdminName, Policy: policy.AllowAll()}})
	}
	for _, pc := range cfg.Principals {
		pol, err := policy.Compile(pc.Config)
		if err != nil {
			return nil, fmt.Errorf("principal %s: %w", pc.Name, err)
		}
		p := &Principal{Name: pc.Name, Policy: pol}
		if pc.TokenSHA256 != "" {
			raw, err := hex.DecodeString(strings.TrimSpace(pc.TokenSHA256))
			if err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("principal %s: token_sha256 must be 64 hex characters", pc.Name)
			}
			var h [32]byte
			copy(h[:], raw)
			a.tokens = append(a.tokens, tokenEntry{hash: h, p: p})
		}
		for _, s := range pc.MTLSSubjects {
			if _, dup := a.subjects[s]; dup {
				return nil, fmt.Errorf("mtls subject %q mapped twice", s)
			}
			a.subjects[s] = p
		}
	}
	return a, nil
}

// FromBearer returns the token's principal. Every configured hash is compared
// in constant time, so timing says nothing about which one (if any) matched.
func (a *Authenticator) FromBearer(token string) (*Principal, bool) {
	if token == "" {
		return nil, false
	}
	h := sha256.Sum256([]byte(token))
	var found *Principal
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(h[:], a.tokens[i].hash[:]) == 1 {
			found = a.tokens[i].p
		}
	}
	return found, found != nil
}

// FromCertificate maps a verified client certificate to a principal by its
// URI SANs (SPIFFE IDs) first, then its subject common name, then its full
// subject DN string.
func (a *Authenticator) FromCertificate(c *x509.Certificate) (*Principal, bool) {
	for _, u := range c.URIs {
		if p, ok := a.subjects[u.String()]; ok {
			return p, true
		}
	}
	if c.Subject.CommonName != "" {
		if p, ok := a.subjects[c.Subject.CommonName]; ok {
			return p, true
		}
	}
	p, ok := a.subjects[c.Subject.String()]
	return p, ok
}

// HasMTLS reports whether any principal authenticates by client certificate.
func (a *Authenticator) HasMTLS() bool { return len(a.subjects) > 0 }

// NewToken returns a fresh random bearer token and its SHA-256 hex.
func NewToken() (token, hashHex string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = "cg_" + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken is the token_sha256 value of a token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// LoadOrCreateBootstrapToken reads dataDir/admin.token, creating it (0600)
// on first start.
func LoadOrCreateBootstrapToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, TokenFileName)
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	tok, _, err := NewToken()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}
