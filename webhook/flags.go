package webhook

import (
	"errors"
	"flag"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// BindConfigFlags defines on fs the flags that set a Config (--wait-image,
// --cluster-domain, --default-timeout, the --wait-* resources and
// --fetch-size-limit), so the webhook and the depends-on CLI inject with the
// same flags and defaults. waitImage is the binary's default image. The
// returned func, called after fs.Parse, gives the validated Config; its error
// names every bad flag.
//
// --readiness-url and --readiness-ca-file point object waits at the readiness
// service; defaultCAFile, if set, gives the CA file when --readiness-url is set
// without --readiness-ca-file (the webhook: <cert-dir>/ca.crt).
func BindConfigFlags(fs *flag.FlagSet, waitImage string, defaultCAFile func() string) func() (Config, error) {
	def := DefaultConfig()
	readinessURL := fs.String("readiness-url", "", "https URL of the depends-on readiness service, which answers depends-on.dev/jobs, workloads and endpoints (empty: not installed, those keys are denied)")
	readinessCAFile := fs.String("readiness-ca-file", "", "PEM file of the CA that signs the readiness service's certificate, given to the wait container (the webhook's default with --readiness-url: <cert-dir>/ca.crt); the webhook reads it again when it changes")
	img := fs.String("wait-image", waitImage, "image of the injected wait-for-service and fetch containers")
	domain := fs.String("cluster-domain", def.ClusterDomain, "the cluster's DNS domain, for Service names")
	timeout := fs.Duration("default-timeout", def.DefaultTimeout, "timeout of Pods that set no depends-on.dev/timeout (0 waits forever)")
	cpuReq := fs.String("wait-cpu-request", def.Resources.Requests.Cpu().String(), "CPU request of each injected container")
	memReq := fs.String("wait-memory-request", def.Resources.Requests.Memory().String(), "memory request of each injected container")
	cpuLim := fs.String("wait-cpu-limit", def.Resources.Limits.Cpu().String(), "CPU limit of each injected container (empty: none)")
	memLim := fs.String("wait-memory-limit", def.Resources.Limits.Memory().String(), "memory limit of each injected container")
	fetchLimit := fs.String("fetch-size-limit", def.FetchSizeLimit.String(), "sizeLimit of the fetch emptyDir, and the cap on each download")

	return func() (Config, error) {
		cfg := def
		cfg.WaitImage, cfg.ClusterDomain, cfg.DefaultTimeout = *img, *domain, *timeout
		var errs []error
		quantity := func(name, value string) resource.Quantity {
			q, err := resource.ParseQuantity(value)
			if err != nil {
				errs = append(errs, fmt.Errorf("--%s=%q: %w", name, value, err))
			}
			return q
		}
		cfg.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    quantity("wait-cpu-request", *cpuReq),
				corev1.ResourceMemory: quantity("wait-memory-request", *memReq),
			},
			Limits: corev1.ResourceList{corev1.ResourceMemory: quantity("wait-memory-limit", *memLim)},
		}
		if *cpuLim != "" {
			cfg.Resources.Limits[corev1.ResourceCPU] = quantity("wait-cpu-limit", *cpuLim)
		}
		cfg.FetchSizeLimit = quantity("fetch-size-limit", *fetchLimit)
		if *readinessURL != "" {
			cfg.ReadinessURL = *readinessURL
			file := *readinessCAFile
			if file == "" && defaultCAFile != nil {
				file = defaultCAFile()
			}
			if file == "" {
				errs = append(errs, errors.New("--readiness-url needs --readiness-ca-file"))
			} else if pem, err := os.ReadFile(file); err != nil {
				errs = append(errs, fmt.Errorf("--readiness-ca-file: %w", err))
			} else {
				cfg.ReadinessCA, cfg.ReadinessCAFile = string(pem), file
			}
		} else if *readinessCAFile != "" {
			errs = append(errs, errors.New("--readiness-ca-file needs --readiness-url"))
		}
		if err := errors.Join(errs...); err != nil {
			return Config{}, err
		}
		if err := cfg.Validate(); err != nil {
			return Config{}, err
		}
		return cfg, nil
	}
}
