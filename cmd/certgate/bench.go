package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/certgate/certgate/internal/bench"
)

func newBenchCmd(cf *clientFlags) *cobra.Command {
	var o bench.Options
	var cpuProfile, serveBaseline string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Drive issuance load against a server (or --in-process, or a plain-HTTP --baseline) and print throughput and latency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			rep := &bench.Report{}
			if cpuProfile != "" {
				// The load generator shares the machine it measures; its own
				// profile shows what it costs.
				f, ferr := os.Create(cpuProfile)
				if ferr != nil {
					return ferr
				}
				defer f.Close()
				if ferr := pprof.StartCPUProfile(f); ferr != nil {
					return ferr
				}
				defer pprof.StopCPUProfile()
			}
			if serveBaseline != "" {
				ln, lerr := net.Listen("tcp", serveBaseline)
				if lerr != nil {
					return lerr
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "plain-HTTP baseline signer on http://%s (no TLS, auth or database)\n", ln.Addr())
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return bench.ServeBaseline(ctx, ln, o)
			}
			if o.InProcess || o.Baseline {
				rep, err = bench.Run(cmd.Context(), nil, o)
			} else {
				c, cerr := cf.client()
				if cerr != nil {
					return cerr
				}
				rep, err = bench.Run(cmd.Context(), c, o)
				// Connections dialled for the load and never used would hold a
				// server's graceful shutdown for 5 s.
				c.HTTP.CloseIdleConnections()
			}
			if err != nil {
				return err
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			bench.Print(cmd.OutOrStdout(), rep)
			if rep.Errors > 0 {
				return exitCode(2)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 8, "concurrent requests")
	cmd.Flags().DurationVar(&o.Duration, "duration", 10*time.Second, "how long to run (ignored with --count)")
	cmd.Flags().IntVar(&o.Count, "count", 0, "stop after this many requests")
	cmd.Flags().StringVar(&o.Profile, "profile", "server", "client, server or machine")
	cmd.Flags().StringVar(&o.KeyType, "key-type", "ecdsa-p256", "ecdsa-p256 or rsa-2048")
	cmd.Flags().BoolVar(&o.ServerKeys, "server-keys", false, "let the server generate keys instead of sending CSRs")
	cmd.Flags().BoolVar(&o.InProcess, "in-process", false, "sign in this process with no server: the ceiling to compare against")
	cmd.Flags().BoolVar(&o.Baseline, "baseline", false, "drive a plain-HTTP signer started in this process (no TLS, auth or database): what bare HTTP costs")
	cmd.Flags().IntVar(&o.CSRPool, "csrs", 64, "distinct pre-generated CSRs")
	cmd.Flags().StringVar(&serveBaseline, "serve-baseline", "", "only serve the plain-HTTP baseline signer on ADDR until interrupted, to drive it from another process")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write this process's CPU profile to FILE")
	cmd.MarkFlagsMutuallyExclusive("in-process", "baseline", "serve-baseline")
	return cmd
}
