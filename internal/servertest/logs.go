package servertest

import (
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

// RenderedLogs renders every log entry the server wrote twice: as the JSON
// the production encoder writes, and as Go's formatting of message and
// fields, so a leak is found whichever way a reader sees the logs.
func (e *Env) RenderedLogs(t testing.TB) []string {
	t.Helper()
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg", LevelKey: "level", NameKey: "logger", CallerKey: "caller",
		StacktraceKey: "stack", EncodeLevel: zapcore.LowercaseLevelEncoder, EncodeDuration: zapcore.StringDurationEncoder})
	var out []string
	for _, en := range e.Logs.All() {
		buf, err := enc.EncodeEntry(en.Entry, en.Context)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.String(), fmt.Sprintf("%s %s %s %v", en.Message, en.LoggerName, en.Stack, en.ContextMap()))
		buf.Free()
	}
	return out
}

// LeakNeedles is a secret and the forms a leak would show: for PEM the whole
// text, the base64 body joined, 40-character slices from inside single
// lines (start, middle, end), and slices of the DER's hex.
func LeakNeedles(secret string) []string {
	b, _ := pem.Decode([]byte(secret))
	if b == nil {
		return []string{secret}
	}
	needles := []string{strings.TrimSpace(secret)}
	var body []string
	for _, l := range strings.Split(secret, "\n") {
		if l == "" || strings.HasPrefix(l, "-----") {
			continue
		}
		body = append(body, l)
		if len(l) >= 40 {
			needles = append(needles, l[:40], l[len(l)-40:], l[(len(l)-40)/2:(len(l)-40)/2+40])
		}
	}
	h := hex.EncodeToString(b.Bytes)
	for i := 0; i+40 <= len(h) && i < 400; i += 120 {
		needles = append(needles, h[i:i+40])
	}
	return append(needles, strings.Join(body, ""))
}
