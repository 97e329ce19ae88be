package servertest

import (
	"testing"

	"github.com/certgate/certgate/internal/ca"
	"github.com/certgate/certgate/internal/ca/pcatest"
	"github.com/certgate/certgate/internal/config"
	"github.com/certgate/certgate/internal/server"
)

// SetAWSTestEnv points the SDK's default credential chain at static test
// credentials and away from any real AWS configuration on the machine.
func SetAWSTestEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCERTGATETEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "certgate-test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "")
}

// WithPCA runs the server on the aws-pca backend against the double.
func WithPCA(t testing.TB, dbl *pcatest.Server) Option {
	SetAWSTestEnv(t)
	return func(c *config.Config, _ *server.Options) {
		c.Backend = "aws-pca"
		c.AWSPCA.Region = dbl.Region()
		c.AWSPCA.Endpoint = dbl.URL()
		c.AWSPCA.RootCAArn = dbl.ARN(ca.Root)
		c.AWSPCA.ClientCAArn = dbl.ARN(ca.ClientCA)
		c.AWSPCA.ServerCAArn = dbl.ARN(ca.ServerCA)
		c.AWSPCA.IstioCAArn = dbl.ARN(ca.IstioCA)
	}
}

// NewPCADouble starts a PCA double closed at the end of the test.
func NewPCADouble(t testing.TB, opts ...pcatest.Option) *pcatest.Server {
	t.Helper()
	d, err := pcatest.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}
