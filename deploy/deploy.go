// Package deploy renders the kustomize overlays in this directory with the
// kustomize Go API, so `make manifests` and `make deploy` need no kustomize
// binary, and tests check exactly what `kubectl apply -k` would apply.
//
// Layout:
//
//	base/          Namespace, ServiceAccount, Service, Deployment, PDB, MutatingWebhookConfiguration
//	readiness/     the readiness service: ServiceAccount, RBAC, state ConfigMap, Service, Deployment, PDB
//	cert-manager/  base + cert-manager Issuers/Certificates + CA injection (default install)
//	self-signed/   base + the component written by `make certs` (generated/, git-ignored)
package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object names shared by the manifests, the certs tool and the tests.
const (
	Namespace            = "depends-on-system"
	Name                 = "depends-on-webhook" // Deployment, Service, ServiceAccount, PDB
	WebhookConfiguration = "depends-on"
	WebhookName          = "inject.depends-on.dev"
	SecretName           = "depends-on-webhook-tls"
	ContainerName        = "webhook"
	WebhookImage         = "depends-on/webhook"
	WaitImage            = "depends-on/wait-for-service"

	// The readiness service (readiness/): Deployment, Service, ServiceAccount,
	// PDB, ClusterRole and ClusterRoleBinding share ReadinessName.
	ReadinessName        = "depends-on-readiness"
	ReadinessSecretName  = "depends-on-readiness-tls"
	ReadinessImage       = "depends-on/readiness"
	ReadinessStateConfig = "depends-on-readiness-state" // ConfigMap, Role and RoleBinding
)

// Overlays are the installable overlays, relative to this directory.
var Overlays = []string{"cert-manager", "self-signed"}

// Dir returns the absolute path of this directory (deploy/ in the source
// tree), found from the caller's working directory or this file's location.
func Dir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Dir(file)
		if fi, err := os.Stat(filepath.Join(dir, "base", "kustomization.yaml")); err == nil && !fi.IsDir() {
			return dir, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(filepath.Join(d, "deploy", "base", "kustomization.yaml")); err == nil && !fi.IsDir() {
			return filepath.Join(d, "deploy"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("deploy/base not found above %s", wd)
		}
	}
}

// Options changes what Render produces, the way `kustomize edit` would.
type Options struct {
	// Images are kustomize image overrides, e.g. from ParseImage.
	Images []types.Image
	// WaitImage, when set, is passed to the webhook as --wait-image (the
	// binary's built-in default is the WAIT_IMG it was built with).
	WaitImage string
}

// Render builds the kustomization in dir and returns the multi-document YAML
// (kustomize's legacy order: Namespace first, webhook configurations last).
// With Options, dir is wrapped in a temporary kustomization that sets them,
// so the source tree is never edited.
func Render(dir string, opts Options) ([]byte, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	target := abs
	if len(opts.Images) > 0 || opts.WaitImage != "" {
		tmp, err := os.MkdirTemp("", "depends-on-kustomize-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := writeWrapper(tmp, abs, opts); err != nil {
			return nil, err
		}
		target = tmp
	}
	k := krusty.MakeKustomizer(&krusty.Options{
		Reorder:          krusty.ReorderOptionLegacy,
		LoadRestrictions: types.LoadRestrictionsRootOnly,
		PluginConfig:     types.DisabledPluginConfig(),
	})
	m, err := k.Run(filesys.MakeFsOnDisk(), target)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return m.AsYaml()
}

func writeWrapper(tmp, overlay string, opts Options) error {
	rel, err := filepath.Rel(tmp, overlay)
	if err != nil {
		rel = overlay
	}
	k := types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: []string{filepath.ToSlash(rel)},
		Images:    opts.Images,
	}
	if opts.WaitImage != "" {
		patch, err := yaml.Marshal([]map[string]any{{
			"op":    "add",
			"path":  "/spec/template/spec/containers/0/args/-",
			"value": "--wait-image=" + opts.WaitImage,
		}})
		if err != nil {
			return err
		}
		k.Patches = append(k.Patches, types.Patch{
			Patch:  string(patch),
			Target: &types.Selector{ResId: resIDDeployment()},
		})
	}
	data, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), data, 0o644)
}

// ParseImage turns "NAME=IMAGE" or "IMAGE" (NAME defaulting to
// defaultName) into a kustomize image override; IMAGE may carry a :tag or an
// @digest, and a registry with a port.
func ParseImage(s, defaultName string) (types.Image, error) {
	name, ref := defaultName, s
	if before, after, ok := strings.Cut(s, "="); ok {
		name, ref = before, after
	}
	if name == "" || ref == "" {
		return types.Image{}, fmt.Errorf("invalid image %q: want [NAME=]IMAGE[:TAG|@DIGEST]", s)
	}
	img := types.Image{Name: name}
	if before, after, ok := strings.Cut(ref, "@"); ok {
		img.NewName, img.Digest = before, after
	} else {
		img.NewName = ref
		if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
			img.NewName, img.NewTag = ref[:i], ref[i+1:]
		}
	}
	if img.NewName == "" || strings.ContainsAny(img.NewName, " \t") {
		return types.Image{}, fmt.Errorf("invalid image %q", s)
	}
	return img, nil
}

// CopySources copies the kustomization files of deploy/ (without the git-ignored
// self-signed/generated component) into dst, so tests can complete the
// self-signed overlay in a temporary tree without touching the checkout.
func CopySources(dst string) error {
	dir, err := Dir()
	if err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "generated" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !strings.HasSuffix(path, ".yaml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
}
