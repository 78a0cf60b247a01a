package testutil

// The readiness settings the goldens of webhook/testdata were generated with
// (webhook's goldenConfig); the integration tier starts the webhook with them.
const (
	GoldenReadinessURL = "https://depends-on-readiness.depends-on-system.svc:443"
	// GoldenReadinessCA is a fixed PEM block, not a real certificate.
	GoldenReadinessCA = "-----BEGIN CERTIFICATE-----\ndGVzdCBDQQ==\n-----END CERTIFICATE-----\n"
)
