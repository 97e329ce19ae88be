package ca

import (
	"math/big"
	"strings"
	"testing"
)

// colonForm renders clean hex (even length) as colon-separated octets.
func colonForm(hexDigits string) string {
	if len(hexDigits)%2 == 1 {
		hexDigits = "0" + hexDigits
	}
	var parts []string
	for i := 0; i < len(hexDigits); i += 2 {
		parts = append(parts, hexDigits[i:i+2])
	}
	return strings.Join(parts, ":")
}

// maxSerialOctets is RFC 5280's bound on a certificate serial number; with
// the sign octet a DER serial is at most 21 octets.
const maxSerialOctets = 20

// FuzzParseSerial: ParseSerial never panics; whatever it accepts is a
// positive number whose canonical form is a fixed point of NormalizeSerial;
// every spelling of the same serial (upper/lower case, with or without
// colons, PCA's colon form with its sign octet) parses to the same value.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{
		"1", "01", "00", "0", "a", "A", "ff", "00:ff", "7f:ff:ff", "DE:AD:BE:EF", "deadbeef",
		"0123456789abcdef0123456789abcdef", "7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
		":", "a:", ":a", "a::b", "1:2:3", "g", "-1", "+1", "0x1f", " 1", "1 ", "１", "\x00",
		strings.Repeat("f", 64), strings.Repeat("f", 65), strings.Repeat("ab:", 21) + "ab",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSerial(s)
		if err != nil {
			if n != nil {
				t.Fatalf("ParseSerial(%q) returned %v and error %v", s, n, err)
			}
			if _, nerr := NormalizeSerial(s); nerr == nil {
				t.Fatalf("NormalizeSerial(%q) accepted what ParseSerial refused (%v)", s, err)
			}
			return
		}
		if n.Sign() <= 0 {
			t.Fatalf("ParseSerial(%q) = %v, not positive", s, n)
		}
		f1 := FormatSerial(n)
		if f1 != strings.ToLower(f1) || strings.Contains(f1, ":") || strings.HasPrefix(f1, "0") {
			t.Fatalf("FormatSerial(%v) = %q, not canonical lower-case hex", n, f1)
		}
		norm, err := NormalizeSerial(f1)
		if err != nil || norm != f1 {
			t.Fatalf("NormalizeSerial(FormatSerial(%q)) = %q, %v; want %q", s, norm, err, f1)
		}
		if ns, err := NormalizeSerial(s); err != nil || ns != f1 {
			t.Fatalf("NormalizeSerial(%q) = %q, %v; want %q", s, ns, err, f1)
		}
		// Case variants.
		for _, v := range []string{strings.ToUpper(s), strings.ToLower(s)} {
			m, err := ParseSerial(v)
			if err != nil || m.Cmp(n) != 0 {
				t.Fatalf("ParseSerial(%q) = %v, %v; want %v as for %q", v, m, err, n, s)
			}
		}
		// Without colons.
		if bare := strings.ReplaceAll(s, ":", ""); bare != s {
			if m, err := ParseSerial(bare); err != nil || m.Cmp(n) != 0 {
				t.Fatalf("ParseSerial(%q) = %v, %v; want %v as for %q", bare, m, err, n, s)
			}
		}
		// Colon forms of a serial a certificate can carry.
		if len(n.Bytes()) <= maxSerialOctets {
			for _, v := range []string{colonForm(f1), strings.ToUpper(colonForm(f1)), ColonSerial(n), strings.ToUpper(ColonSerial(n))} {
				m, err := ParseSerial(v)
				if err != nil || m.Cmp(n) != 0 {
					t.Fatalf("ParseSerial(%q) = %v, %v; want %v (from %q)", v, m, err, n, s)
				}
			}
		}
	})
}

func TestParseSerial(t *testing.T) {
	want, _ := new(big.Int).SetString("deadbeef", 16)
	for _, s := range []string{"deadbeef", "DEADBEEF", "DeAdBeEf", "de:ad:be:ef", "DE:AD:BE:EF", "00:de:ad:be:ef", "00deadbeef"} {
		n, err := ParseSerial(s)
		if err != nil || n.Cmp(want) != 0 {
			t.Errorf("ParseSerial(%q) = %v, %v; want %v", s, n, err, want)
		}
	}
	// A 20-octet serial with the high bit set, as PCA prints it (21 octets
	// with the sign octet, 62 characters).
	big20, _ := new(big.Int).SetString(strings.Repeat("ff", 20), 16)
	for _, s := range []string{ColonSerial(big20), strings.ToUpper(ColonSerial(big20)), FormatSerial(big20)} {
		n, err := ParseSerial(s)
		if err != nil || n.Cmp(big20) != 0 {
			t.Errorf("ParseSerial(%q) = %v, %v; want the 20-octet serial", s, n, err)
		}
	}
	for _, s := range []string{"", "0", "00", "00:00", ":", ":ab", "ab:", "ab::cd", "xyz", "0x1f", "-1", "+1", " 1", "1 ", "１",
		strings.Repeat("1", MaxSerialHexLen+1)} {
		if n, err := ParseSerial(s); err == nil {
			t.Errorf("ParseSerial(%q) = %v, want an error", s, n)
		}
	}
}

func TestFormatAndColonSerial(t *testing.T) {
	cases := []struct {
		hex, format, colon string
	}{
		{"1", "1", "01"},
		{"ff", "ff", "00:ff"},
		{"7f", "7f", "7f"},
		{"0102", "102", "01:02"},
		{"deadbeef", "deadbeef", "00:de:ad:be:ef"},
	}
	for _, c := range cases {
		n, _ := new(big.Int).SetString(c.hex, 16)
		if got := FormatSerial(n); got != c.format {
			t.Errorf("FormatSerial(%s) = %q, want %q", c.hex, got, c.format)
		}
		if got := ColonSerial(n); got != c.colon {
			t.Errorf("ColonSerial(%s) = %q, want %q", c.hex, got, c.colon)
		}
	}
}

func TestNewSerial(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		n, err := NewSerial()
		if err != nil {
			t.Fatal(err)
		}
		if n.Sign() <= 0 || n.BitLen() > 127 || n.BitLen() < 64 {
			t.Fatalf("NewSerial() = %s: want positive, at most 127 bits (no sign octet), with entropy", FormatSerial(n))
		}
		s := FormatSerial(n)
		if seen[s] {
			t.Fatalf("NewSerial repeated %s", s)
		}
		seen[s] = true
		if m, err := ParseSerial(ColonSerial(n)); err != nil || m.Cmp(n) != 0 {
			t.Fatalf("colon form of %s does not parse back: %v", s, err)
		}
	}
}
