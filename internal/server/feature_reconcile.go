package server

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// reconcileMargin is how much older than the longest live request a
// pending row must be before reconciliation may finish it.
const reconcileMargin = 2 * time.Second

func init() {
	features = append(features, func(_ context.Context, s *Server) error {
		s.OnStart = append(s.OnStart, func(ctx context.Context) error {
			interval, minAge := s.Cfg.Reconcile.Interval.D(), s.Cfg.Reconcile.MinAge.D()
			if interval <= 0 {
				return nil
			}
			// A row younger than the longest a live request may take can
			// belong to a request still signing: reconciling it would
			// finish the row under the request, which then fails (a 503
			// for a certificate that was issued and recorded).
			floor := reconcileMargin
			if s.Backend.Kind() == "aws-pca" {
				timeout := s.Cfg.AWSPCA.IssueTimeout.D()
				if timeout <= 0 {
					timeout = 30 * time.Second // the PCA client's default
				}
				floor += timeout
			}
			if minAge < floor {
				s.Log.Warn("reconcile.min_age is shorter than a live request may take; raised",
					zap.Duration("configured", minAge), zap.Duration("used", floor))
				minAge = floor
			}
			go s.Issuer.RunReconciler(ctx, s.Store, minAge, interval)
			return nil
		})
		return nil
	})
}
