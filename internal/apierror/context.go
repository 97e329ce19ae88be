package apierror

import "context"

var errDeadline = context.DeadlineExceeded
