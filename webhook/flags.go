package webhook

import (
	"errors"
	"flag"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// BindConfigFlags defines on fs the flags that set a Config (--wait-image,
// --cluster-domain, --default-timeout, the --wait-* resources and
// --fetch-size-limit), so the webhook and the depends-on CLI inject with the
// same flags and defaults. waitImage is the binary's default image. The
// returned func, called after fs.Parse, gives the validated Config; its error
// names every bad flag.
func BindConfigFlags(fs *flag.FlagSet, waitImage string) func() (Config, error) {
	def := DefaultConfig()
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
		if err := errors.Join(errs...); err != nil {
			return Config{}, err
		}
		if err := cfg.Validate(); err != nil {
			return Config{}, err
		}
		return cfg, nil
	}
}
