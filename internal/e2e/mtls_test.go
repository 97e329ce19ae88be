package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certgate/certgate/internal/servertest"
)

// keyPair turns an issue response with a server-generated key into a TLS
// certificate presenting leaf + chain.
func keyPair(t *testing.T, res *issueResp) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair([]byte(res.Certificate+res.Chain), []byte(res.PrivateKey))
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	return c
}

// selfMadeClientCert is a client certificate from a CA certgate never saw.
func selfMadeClientCert(t *testing.T) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rogue CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client.example.internal"},
		DNSNames: []string{"client.example.internal"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	c, err := tls.X509KeyPair(
		append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type serverSide struct {
	state tls.ConnectionState
	err   error
	got   []byte
}

// mtlsExchange runs one connection: a listener with serverCert requiring
// client certificates verified against rootPool only, and a client trusting
// only rootPool presenting clientCert. The client sends "ping", the server
// answers "pong".
func mtlsExchange(t *testing.T, rootPool *x509.CertPool, serverCert, clientCert tls.Certificate, serverName string) (srv serverSide, cli tls.ConnectionState, reply []byte, cliErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    rootPool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan serverSide, 1)
	go func() {
		var s serverSide
		defer func() { done <- s }()
		c, err := ln.Accept()
		if err != nil {
			s.err = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := c.(*tls.Conn)
		if s.err = tc.Handshake(); s.err != nil {
			return
		}
		s.state = tc.ConnectionState()
		buf := make([]byte, 4)
		if _, s.err = io.ReadFull(tc, buf); s.err != nil {
			return
		}
		s.got = buf
		_, s.err = tc.Write([]byte("pong"))
	}()

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{
		RootCAs: rootPool,
		// Always present the certificate, even when it does not match the
		// server's acceptable CAs, so the server has to refuse it itself.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &clientCert, nil },
		ServerName:           serverName,
		MinVersion:           tls.VersionTLS12,
	})
	if err != nil {
		cliErr = err
	} else {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		cli = conn.ConnectionState()
		if _, cliErr = conn.Write([]byte("ping")); cliErr == nil {
			reply = make([]byte, 4)
			_, cliErr = io.ReadFull(conn, reply)
		}
		conn.Close()
	}
	srv = <-done
	return srv, cli, reply, cliErr
}

// TestMutualTLS uses certgate's certificates for a real mTLS connection
// between two parties that trust nothing but the root.
func TestMutualTLS(t *testing.T) {
	env := servertest.Start(t)
	root := trustBundle(t, env)[0]
	rootPool := poolOf(root)

	serverRes := issue(t, env, map[string]any{"profile": "server", "common_name": "localhost", "sans": []string{"localhost", "127.0.0.1"}})
	clientRes := issue(t, env, map[string]any{"profile": "client", "common_name": "client.example.internal",
		"sans": []string{"spiffe://cluster.local/ns/e2e/sa/client"}})
	machineRes := issue(t, env, map[string]any{"profile": "machine", "common_name": "localhost", "sans": []string{"127.0.0.1"}})
	clientLocalRes := issue(t, env, map[string]any{"profile": "client", "common_name": "localhost", "sans": []string{"127.0.0.1"}})
	serverCert, clientCert, machineCert := keyPair(t, serverRes), keyPair(t, clientRes), keyPair(t, machineRes)
	clientLocalCert := keyPair(t, clientLocalRes)

	cases := []struct {
		name       string
		server     tls.Certificate
		client     tls.Certificate
		serverName string
		// failing side ("" = the connection must work) and what its error says
		failSide, failWhy string
	}{
		{"server and client profiles, by name", serverCert, clientCert, "localhost", "", ""},
		{"server and client profiles, by IP", serverCert, clientCert, "127.0.0.1", "", ""},
		{"machine profile on both sides", machineCert, machineCert, "localhost", "", ""},
		{"client certificate from a self-made CA", serverCert, selfMadeClientCert(t), "localhost", "server", "unknown authority"},
		{"server-profile certificate as client certificate (no clientAuth)", serverCert, serverCert, "localhost", "server", "key usage"},
		{"client-profile certificate as server certificate (no serverAuth)", clientLocalCert, clientCert, "localhost", "client", "key usage"},
		{"wrong server name", serverCert, clientCert, "other.example.com", "client", "not other.example.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, cli, reply, cliErr := mtlsExchange(t, rootPool, c.server, c.client, c.serverName)
			if c.failSide != "" {
				if srv.err == nil || cliErr == nil {
					t.Fatalf("want both sides to fail: server %v, client %v", srv.err, cliErr)
				}
				verr := srv.err
				if c.failSide == "client" {
					verr = cliErr
				}
				if !strings.Contains(verr.Error(), c.failWhy) {
					t.Errorf("%s side failed with %q, want a verification error mentioning %q", c.failSide, verr, c.failWhy)
				}
				if srv.got != nil || string(reply) == "pong" {
					t.Errorf("application bytes crossed a connection that should have failed")
				}
				return
			}
			if srv.err != nil || cliErr != nil {
				t.Fatalf("handshake/exchange failed: server %v, client %v", srv.err, cliErr)
			}
			if string(srv.got) != "ping" || string(reply) != "pong" {
				t.Errorf("exchanged %q / %q, want ping / pong", srv.got, reply)
			}
			// Each side saw the other's chain verified up to the root.
			if len(srv.state.VerifiedChains) == 0 {
				t.Fatal("server saw no verified client chain")
			}
			sc := srv.state.VerifiedChains[0]
			if !bytes.Equal(sc[0].Raw, c.client.Certificate[0]) || !bytes.Equal(sc[len(sc)-1].Raw, root.Raw) || len(sc) != 3 {
				t.Errorf("server's verified client chain: %d certificates from %s to %s, want client leaf → CA → root", len(sc), sc[0].Subject, sc[len(sc)-1].Subject)
			}
			if len(cli.VerifiedChains) == 0 {
				t.Fatal("client saw no verified server chain")
			}
			cc := cli.VerifiedChains[0]
			if !bytes.Equal(cc[0].Raw, c.server.Certificate[0]) || !bytes.Equal(cc[len(cc)-1].Raw, root.Raw) || len(cc) != 3 {
				t.Errorf("client's verified server chain: %d certificates from %s to %s, want server leaf → CA → root", len(cc), cc[0].Subject, cc[len(cc)-1].Subject)
			}
		})
	}
}
