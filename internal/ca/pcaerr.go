package ca

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/certgate/certgate/internal/apierror"
)

// Error codes of PCA failures, stable for clients.
const (
	CodePCAInvalidArgs    = "pca_invalid_args"
	CodePCAMalformedCSR   = "pca_malformed_csr"
	CodePCAInvalidState   = "pca_invalid_state"
	CodePCANotFound       = "pca_resource_not_found"
	CodePCAInProgress     = "pca_request_in_progress"
	CodePCAAccessDenied   = "pca_access_denied"
	CodePCAInvalidArn     = "pca_invalid_arn"
	CodePCARequestFailed  = "pca_request_failed"
	CodePCAAlreadyRevoked = "pca_already_processed"
	CodePCAConcurrent     = "pca_concurrent_modification"
	CodePCAInvalidRequest = "pca_invalid_request"
)

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

// awsRequestID digs the AWS request ID out of a failed call.
func awsRequestID(err error) string {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.ServiceRequestID()
	}
	return ""
}

// unknownOutcome is true for failures after which IssueCertificate may have
// been accepted: timeouts, 5xx and broken connections.
func unknownOutcome(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var be *errBudget
	if errors.As(err, &be) {
		return false
	}
	var ae smithy.APIError
	return !errors.As(err, &ae)
}

// classify maps a PCA failure to certgate's error, once, naming the CA ARN,
// template and AWS request ID so an operator can act on it.
func (p *PCAClient) classify(err error, op, caARN, template string) error {
	if err == nil {
		return nil
	}
	rid := awsRequestID(err)
	var e *apierror.Error
	var be *errBudget
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	switch {
	case errors.As(err, &be):
		e = apierror.New(http.StatusTooManyRequests, apierror.CodeRateLimited, "the AWS Private CA %s budget is exhausted for now; retry after the Retry-After delay", op)
		e.Retryable, e.RetryAfter = true, max(be.after, time.Second)
	case errors.Is(err, context.DeadlineExceeded):
		e = apierror.New(http.StatusGatewayTimeout, apierror.CodeTimeout, "AWS Private CA did not complete %s in time", op)
		e.Retryable, e.RetryAfter = true, 2*time.Second
	case errors.Is(err, context.Canceled):
		e = apierror.New(http.StatusRequestTimeout, apierror.CodeTimeout, "the request was cancelled during %s", op)
	case code == "InvalidArgsException":
		e = apierror.New(http.StatusBadRequest, CodePCAInvalidArgs, "AWS Private CA refused the request as invalid: %s", ae.ErrorMessage())
	case code == "MalformedCSRException":
		e = apierror.New(http.StatusBadRequest, CodePCAMalformedCSR, "AWS Private CA could not read the CSR: %s", ae.ErrorMessage())
	case code == "InvalidRequestException":
		e = apierror.New(http.StatusBadRequest, CodePCAInvalidRequest, "AWS Private CA refused the request: %s", ae.ErrorMessage())
	case code == "LimitExceededException" || code == "ThrottlingException" || code == "TooManyRequestsException" || code == "RequestLimitExceeded":
		e = apierror.New(http.StatusTooManyRequests, apierror.CodeUpstreamThrottled, "AWS Private CA is throttling %s (%s); retry later", op, code)
		e.Retryable, e.RetryAfter = true, 2*time.Second
	case code == "InvalidStateException":
		e = apierror.New(http.StatusServiceUnavailable, CodePCAInvalidState, "CA %s is not in a state to serve %s: %s", caARN, op, ae.ErrorMessage())
		e.Retryable, e.RetryAfter = true, 30*time.Second
	case code == "ResourceNotFoundException":
		e = apierror.New(http.StatusInternalServerError, CodePCANotFound, "AWS Private CA has no such resource for %s on CA %s%s: check the configured ARNs", op, caARN, templateNote(template))
	case code == "RequestInProgressException":
		e = apierror.New(http.StatusConflict, CodePCAInProgress, "AWS Private CA is still processing %s on CA %s", op, caARN)
		e.Retryable, e.RetryAfter = true, time.Second
	case code == "RequestAlreadyProcessedException":
		e = apierror.New(http.StatusConflict, CodePCAAlreadyRevoked, "AWS Private CA already processed this %s", op)
	case code == "ConcurrentModificationException":
		e = apierror.New(http.StatusConflict, CodePCAConcurrent, "a concurrent change to CA %s blocked %s; retry", caARN, op)
		e.Retryable, e.RetryAfter = true, time.Second
	case code == "RequestFailedException":
		e = apierror.New(http.StatusBadGateway, CodePCARequestFailed, "AWS Private CA failed %s: %s", op, ae.ErrorMessage())
	case code == "AccessDeniedException" || code == "AccessDenied" || code == "UnauthorizedOperation":
		e = apierror.New(http.StatusInternalServerError, CodePCAAccessDenied, "AWS denied %s on CA %s%s: check the IAM policy (see README) and any RAM share's allowed templates", op, caARN, templateNote(template))
	case code == "InvalidArnException":
		e = apierror.New(http.StatusInternalServerError, CodePCAInvalidArn, "AWS Private CA rejected an ARN in %s: CA %s%s", op, caARN, templateNote(template))
	default:
		var re *awshttp.ResponseError
		var mae *retry.MaxAttemptsError
		switch {
		case errors.As(err, &re) && re.HTTPStatusCode() >= 500, errors.As(err, &mae), unknownOutcome(err):
			e = apierror.New(http.StatusServiceUnavailable, apierror.CodeUpstream, "AWS Private CA is unavailable for %s after retries", op)
			e.Retryable, e.RetryAfter = true, 5*time.Second
		default:
			e = apierror.New(http.StatusBadGateway, apierror.CodeUpstream, "AWS Private CA %s failed (%s)", op, code)
		}
	}
	if rid != "" {
		e = e.WithDetail("aws_request_id", rid)
	}
	e = e.WithCause(err)
	p.log.Warn("pca call failed", zapFields(op, caARN, template, rid, code, err)...)
	return e
}

func templateNote(t string) string {
	if t == "" {
		return ""
	}
	return " with template " + t
}
