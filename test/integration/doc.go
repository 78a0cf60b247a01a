// Package integration is the integration test tier of depends-on: admission
// through a real kube-apiserver and etcd (controller-runtime's envtest).
//
// TestMain builds the real webhook binary (./cmd/webhook), runs it over TLS with
// a certgen certificate for 127.0.0.1 on free loopback ports, and registers it
// through the project's own MutatingWebhookConfiguration from deploy/base, with
// only the clientConfig rewritten to its URL and caBundle. Every case then
// asserts on what the API server stored or returned.
//
// The kube-apiserver, etcd and kubectl binaries come from KUBEBUILDER_ASSETS;
// the tier fails (never skips) when they are missing. `make test` and
// `make test-integration` set it (with setup-envtest when it is empty).
//
// The cases share one API server and one webhook process and are not
// parallel: several of them assert exact deltas of the webhook's /metrics
// counters. Each case creates its own namespaces (the webhook's
// namespaceSelector excludes kube-system and friends); the API server is
// thrown away at the end, so nothing is cleaned up one object at a time
// (envtest runs no namespace controller: deleted namespaces would only hang
// in Terminating).
package integration
