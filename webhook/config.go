package webhook

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/depends-on/depends-on/webhook/target"
)

// Names of what the webhook injects. They are reserved: a Pod that already has a
// container or volume of that name, not injected by us, is denied.
const (
	WaitContainerName  = "wait-for-service"
	FetchContainerName = "fetch"
	FetchVolumeName    = "depends-on-fetch"
	// FetchDir is where the fetch container mounts the shared volume.
	FetchDir = "/depends-on/fetch"
	// WaitCommand is the binary's path in the wait-for-service image.
	WaitCommand = "/wait-for-service"
	// ReadinessTokenVolumeName is the projected ServiceAccount token volume the
	// wait container authenticates to the readiness service with (object keys).
	ReadinessTokenVolumeName = "depends-on-readiness-token"
	// ReadinessTokenDir is where the wait container mounts it, read-only.
	ReadinessTokenDir = "/var/run/secrets/depends-on.dev/readiness"
	// ReadinessAudience is the token's audience, which the readiness service requires.
	ReadinessAudience = "depends-on.dev/readiness"
	// ReadinessTokenSeconds is the token's lifetime; the kubelet rotates it.
	ReadinessTokenSeconds int64 = 600
	// EnvReadinessCA holds the PEM CA certificates of the readiness service's
	// serving certificate, in the wait container.
	EnvReadinessCA = "DEPENDS_ON_READINESS_CA"
	// RunAsUser is the non-root user the injected containers run as (distroless "nonroot").
	RunAsUser int64 = 65532
)

// Config is what the webhook's flags set; DefaultConfig gives the defaults.
type Config struct {
	// WaitImage is the image of the injected containers.
	WaitImage string
	// ClusterDomain is the cluster's DNS domain, used to build Service FQDNs.
	ClusterDomain string
	// DefaultTimeout applies when a Pod sets no depends-on.dev/timeout; 0 waits forever.
	DefaultTimeout time.Duration
	// Resources of each injected container.
	Resources corev1.ResourceRequirements
	// FetchSizeLimit is the sizeLimit of the fetch emptyDir, and the cap on each download.
	FetchSizeLimit resource.Quantity
	// Limits bound what one Pod may ask for; zero fields take the defaults
	// (DefaultMaxWaits, DefaultMaxFetches, DefaultMaxValueBytes).
	Limits Limits
	// ReadinessURL is the https URL of the readiness service; empty means it is
	// not installed, and the object keys (jobs, workloads, endpoints) are denied.
	ReadinessURL string
	// ReadinessCA is the PEM of the CA certificates that sign its serving
	// certificate, given to the wait container; empty: the system's roots.
	ReadinessCA string
	// ReadinessCAFile is the file ReadinessCA was read from (BindConfigFlags),
	// so that a server can read it again when the CA rotates; empty if none.
	ReadinessCAFile string
}

// WaitImageName is the name (without tag) of the wait-for-service image; the
// webhook's build tags it with its version (cmd/webhook, Makefile, deploy).
const WaitImageName = "depends-on/wait-for-service"

// DefaultWaitImage is used when no image is configured.
const DefaultWaitImage = WaitImageName + ":dev"

// DefaultConfig returns the configuration the webhook's flags default to.
func DefaultConfig() Config {
	return Config{
		WaitImage:     DefaultWaitImage,
		ClusterDomain: "cluster.local",
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("16Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
		},
		FetchSizeLimit: resource.MustParse("32Mi"),
	}
}

// Validate reports every invalid setting.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.WaitImage) == "" {
		errs = append(errs, errors.New("wait image must be set"))
	}
	// The rule wait-for-service applies to the names built on it.
	if err := target.CheckDNSName(c.ClusterDomain); err != nil {
		errs = append(errs, fmt.Errorf("cluster domain %q is not a DNS domain: %w", c.ClusterDomain, err))
	}
	if c.ReadinessURL != "" {
		if u, err := url.Parse(c.ReadinessURL); err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("readiness URL %q: want https://HOST[:PORT][/PATH]", c.ReadinessURL))
		}
	}
	if c.ReadinessCA != "" {
		if b, _ := pem.Decode([]byte(c.ReadinessCA)); b == nil || b.Type != "CERTIFICATE" {
			errs = append(errs, errors.New("readiness CA holds no PEM certificate"))
		}
	}
	if c.Limits.MaxWaits < 0 || c.Limits.MaxFetches < 0 || c.Limits.MaxValueBytes < 0 {
		errs = append(errs, fmt.Errorf("limits %+v must not be negative", c.Limits))
	}
	if c.DefaultTimeout < 0 {
		errs = append(errs, fmt.Errorf("default timeout %s must not be negative", c.DefaultTimeout))
	}
	if c.FetchSizeLimit.Sign() <= 0 {
		errs = append(errs, fmt.Errorf("fetch size limit %s must be positive", c.FetchSizeLimit.String()))
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[name]
		lim, hasLim := c.Resources.Limits[name]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			errs = append(errs, fmt.Errorf("%s request %s exceeds its limit %s", name, req.String(), lim.String()))
		}
	}
	return errors.Join(errs...)
}
