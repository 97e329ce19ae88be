// Package client is the Go client of certgate's HTTP API, used by the CLI and
// by end-to-end tests.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/certgate/certgate/internal/api"
)

// Client talks to one certgate server.
type Client struct {
	Base  string
	Token string
	HTTP  *http.Client
}

// Error is a non-2xx answer, with the server's error body.
type Error struct {
	Status int
	Body   api.ErrorPayload
	Header http.Header
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Body.Code, e.Body.Message)
	for _, d := range e.Body.Details {
		msg += fmt.Sprintf("\n  %s: %s", d.Field, d.Reason)
	}
	if e.Body.RequestID != "" {
		msg += "\n  request id: " + e.Body.RequestID
	}
	return msg
}

// New builds a client trusting only the roots in caPEM (nil: system roots)
// and optionally presenting a client certificate.
func New(base, token string, caPEM []byte, clientCert *tls.Certificate) (*Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("no certificates in the CA file")
		}
		tc.RootCAs = pool
	}
	if clientCert != nil {
		tc.Certificates = []tls.Certificate{*clientCert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 256
	tr.MaxConnsPerHost = 0
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}, nil
}

// Do sends a JSON request and decodes a JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, in, out any, hdr map[string]string) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusTemporaryRedirect {
		e := &Error{Status: resp.StatusCode, Header: resp.Header}
		var eb api.ErrorBody
		if json.Unmarshal(raw, &eb) == nil {
			e.Body = eb.Error
		} else {
			e.Body.Message = strings.TrimSpace(string(raw))
		}
		return resp, e
	}
	if out != nil {
		switch o := out.(type) {
		case *[]byte:
			*o = raw
		default:
			if err := json.Unmarshal(raw, out); err != nil {
				return resp, fmt.Errorf("decoding %s %s: %w", method, path, err)
			}
		}
	}
	return resp, nil
}

// Query builds a query string from non-empty values.
func Query(kv map[string]string) string {
	v := url.Values{}
	for k, x := range kv {
		if x != "" {
			v.Set(k, x)
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// ReadFileIfExists returns nil for a missing file.
func ReadFileIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	return b, err
}
