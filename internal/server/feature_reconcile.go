package server

import (
	"context"
)

func init() {
	features = append(features, func(_ context.Context, s *Server) error {
		s.OnStart = append(s.OnStart, func(ctx context.Context) error {
			interval, minAge := s.Cfg.Reconcile.Interval.D(), s.Cfg.Reconcile.MinAge.D()
			if interval <= 0 {
				return nil
			}
			go s.Issuer.RunReconciler(ctx, s.Store, minAge, interval)
			return nil
		})
		return nil
	})
}
