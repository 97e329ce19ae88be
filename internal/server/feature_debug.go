package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"
)

// The debug listener serves pprof for profiling under load; it is off unless
// debug_listen is set.
func init() {
	features = append(features, func(_ context.Context, s *Server) error {
		addr := s.Cfg.DebugListen
		if addr == "" {
			return nil
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		s.OnStart = append(s.OnStart, func(context.Context) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					s.Log.Warn("debug listener", zap.Error(err))
				}
			}()
			return nil
		})
		s.OnShutdown = append(s.OnShutdown, func(ctx context.Context) error { return srv.Shutdown(ctx) })
		return nil
	})
}
