// Package deploy renders the kustomize overlays in this directory with the
// kustomize Go API, so `make manifests` and `make deploy` need no kustomize
// binary, and tests check exactly what `kubectl apply -k` would apply. The
// manifests (and the Helm chart) are embedded, so a binary renders them
// outside a source checkout too.
//
// Layout:
//
//	base/          Namespace, ServiceAccount, Service, Deployment, PDB, MutatingWebhookConfiguration
//	readiness/     the readiness service: ServiceAccount, RBAC, state ConfigMap, Service, Deployment, PDB
//	cert-manager/  base + cert-manager Issuers/Certificates + CA injection (default install)
//	self-signed/   base + a Job (depends-on certs) that creates the CA, the serving Secret and the caBundle
//	own-certs/     base + the component written by `make certs` (generated/, git-ignored, never embedded)
//	chart/         the Helm chart, rendering the same objects (deploy/chart_test.go keeps them equal)
package deploy

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/webhook"
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
	WaitImage            = webhook.WaitImageName

	// The readiness service (readiness/): Deployment, Service, ServiceAccount,
	// PDB, ClusterRole and ClusterRoleBinding share ReadinessName.
	ReadinessName        = "depends-on-readiness"
	ReadinessSecretName  = "depends-on-readiness-tls"
	ReadinessImage       = "depends-on/readiness"
	ReadinessStateConfig = "depends-on-readiness-state" // ConfigMap, Role and RoleBinding
)

// Overlays are the installable overlays, relative to this directory.
var Overlays = []string{"cert-manager", "self-signed", OwnCertsOverlay}

// OwnCertsOverlay includes the component `make certs` writes into its
// generated/ directory (certificates made outside the cluster).
const OwnCertsOverlay = "own-certs"

// ChartDir is the Helm chart, relative to this directory.
const ChartDir = "chart/depends-on"

// manifests holds the kustomization trees and the chart. Explicit patterns:
// own-certs/generated (private keys, git-ignored) must never be compiled in.
//
//go:embed base/*.yaml cert-manager/*.yaml readiness/*.yaml readiness/webhook-flag/*.yaml self-signed/*.yaml own-certs/kustomization.yaml all:chart/depends-on
var manifests embed.FS

// Manifests returns the embedded deploy/ tree (without own-certs/generated).
func Manifests() fs.FS { return manifests }

// RenderEmbedded renders an overlay (e.g. "cert-manager", or "base") from the
// embedded manifests, without a source checkout. Like Render, Options wrap it
// in a temporary kustomization.
func RenderEmbedded(overlay string, opts Options) ([]byte, error) {
	overlay = path.Clean(strings.TrimPrefix(filepath.ToSlash(overlay), "deploy/"))
	if _, err := fs.Stat(manifests, path.Join(overlay, "kustomization.yaml")); err != nil {
		return nil, fmt.Errorf("no embedded overlay %q: %w", overlay, err)
	}
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(manifests, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(manifests, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/deploy", p), data)
	})
	if err != nil {
		return nil, err
	}
	target := path.Join("/deploy", overlay)
	if len(opts.Images) > 0 || opts.WaitImage != "" {
		data, err := wrapper("../deploy/"+overlay, opts)
		if err != nil {
			return nil, err
		}
		if err := mem.WriteFile("/wrapper/kustomization.yaml", data); err != nil {
			return nil, err
		}
		target = "/wrapper"
	}
	return run(mem, target, overlay)
}

// Dir returns the absolute path of this directory (deploy/ in the source
// tree), found from the caller's working directory or this file's location.
// Only tools that need the checkout itself (the e2e tier, make certs' output)
// use it; rendering works from the embedded files (RenderEmbedded).
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
		rel, err := filepath.Rel(tmp, abs)
		if err != nil {
			rel = abs
		}
		data, err := wrapper(filepath.ToSlash(rel), opts)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), data, 0o644); err != nil {
			return nil, err
		}
		target = tmp
	}
	return run(filesys.MakeFsOnDisk(), target, dir)
}

func run(fsys filesys.FileSystem, target, what string) ([]byte, error) {
	k := krusty.MakeKustomizer(&krusty.Options{
		Reorder:          krusty.ReorderOptionLegacy,
		LoadRestrictions: types.LoadRestrictionsRootOnly,
		PluginConfig:     types.DisabledPluginConfig(),
	})
	m, err := k.Run(fsys, target)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", what, err)
	}
	return m.AsYaml()
}

// wrapper returns a kustomization that includes overlay (a path relative to
// it) and applies opts.
func wrapper(overlay string, opts Options) ([]byte, error) {
	k := types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: []string{overlay},
		Images:    opts.Images,
	}
	if opts.WaitImage != "" {
		patch, err := yaml.Marshal([]map[string]any{{
			"op":    "add",
			"path":  "/spec/template/spec/containers/0/args/-",
			"value": "--wait-image=" + opts.WaitImage,
		}})
		if err != nil {
			return nil, err
		}
		k.Patches = append(k.Patches, types.Patch{
			Patch:  string(patch),
			Target: &types.Selector{ResId: resIDDeployment()},
		})
	}
	return yaml.Marshal(k)
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

// CopySources copies the embedded deploy/ tree (kustomizations and chart,
// never own-certs/generated) into dst, so tests can complete the own-certs
// overlay in a temporary tree without touching the checkout.
func CopySources(dst string) error {
	return fs.WalkDir(manifests, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := fs.ReadFile(manifests, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
