package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/certgate/certgate/internal/bench"
	"github.com/certgate/certgate/internal/servertest"
)

func TestBenchCommand(t *testing.T) {
	env := servertest.Start(t)
	t.Cleanup(env.Client.HTTP.CloseIdleConnections)
	caFile := t.TempDir() + "/root.pem"
	if err := os.WriteFile(caFile, env.RootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode string
		args []string
	}{
		{"server", []string{"--server", env.URL, "--token", env.Srv.Token, "--ca-file", caFile}},
		{"in-process", []string{"--in-process"}},
		{"plain-http-baseline", []string{"--baseline"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			out, errOut, err := runCLI(t, append([]string{"bench", "--count", "5", "--concurrency", "2", "--json"}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			var rep bench.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if rep.Mode != tc.mode || rep.Requests != 5 || rep.Errors != 0 || rep.RPS <= 0 || rep.P99ms < rep.P50ms {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestBenchCommandRefusesTwoModes(t *testing.T) {
	_, _, err := runCLI(t, "bench", "--in-process", "--baseline", "--count", "1")
	if err == nil || !strings.Contains(err.Error(), "in-process") {
		t.Fatalf("--in-process with --baseline: %v, want a refusal naming the flags", err)
	}
}
