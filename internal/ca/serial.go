package ca

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
)

// MaxSerialHexLen bounds what a client may send as a serial: RFC 5280 allows
// 20 octets; colons and a sign byte fit comfortably in 64 characters.
const MaxSerialHexLen = 64

// FormatSerial renders a serial as certgate stores and returns it: lower-case
// hex, no colons, no leading zeros. One canonical form makes lookups by any
// spelling (colons, case, PCA's leading 00) hit the same row.
func FormatSerial(s *big.Int) string { return s.Text(16) }

// ColonSerial renders a serial the way AWS PCA expects in RevokeCertificate:
// the DER integer's bytes as lower-case colon-separated hex (a leading 00
// octet is kept when the high bit is set, as in the certificate).
func ColonSerial(s *big.Int) string {
	b := s.Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// ParseSerial accepts hex with or without colons, in any case.
func ParseSerial(s string) (*big.Int, error) {
	if s == "" || len(s) > MaxSerialHexLen {
		return nil, fmt.Errorf("serial must be 1 to %d characters of hex", MaxSerialHexLen)
	}
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':':
			if i == 0 || i == len(s)-1 || s[i-1] == ':' {
				return nil, fmt.Errorf("serial %q: misplaced colon", s)
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			clean = append(clean, c)
		case c >= 'A' && c <= 'F':
			clean = append(clean, c+('a'-'A'))
		default:
			return nil, fmt.Errorf("serial %q: not hexadecimal", s)
		}
	}
	n, ok := new(big.Int).SetString(string(clean), 16)
	if !ok {
		return nil, fmt.Errorf("serial %q: not hexadecimal", s)
	}
	if n.Sign() == 0 {
		return nil, fmt.Errorf("serial must not be zero")
	}
	return n, nil
}

// NormalizeSerial is ParseSerial followed by FormatSerial.
func NormalizeSerial(s string) (string, error) {
	n, err := ParseSerial(s)
	if err != nil {
		return "", err
	}
	return FormatSerial(n), nil
}

// NewSerial draws a positive 128-bit random serial (CA/B forum asks for at
// least 64 bits of entropy). The top bit is cleared so the DER needs no
// padding octet and every serial is at most 16 octets.
func NewSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	if b[0] == 0 {
		b[0] = 1
	}
	return new(big.Int).SetBytes(b), nil
}
