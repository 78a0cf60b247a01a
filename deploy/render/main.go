// Command render builds deploy/ kustomize overlays with the kustomize Go API
// (no kustomize binary needed) and writes the YAML to stdout or to files.
//
//	go run ./deploy/render deploy/cert-manager                       # to stdout
//	go run ./deploy/render --image depends-on/webhook=reg/webhook:v1 \
//	    --wait-image reg/wait-for-service:v1 deploy/cert-manager | kubectl apply -f -
//	go run ./deploy/render --out-dir _artifacts/manifests deploy/cert-manager deploy/self-signed
//
// A directory that does not exist on disk is looked up among the overlays
// embedded in the binary (deploy/cert-manager, self-signed, base), so a built
// render works outside a checkout.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/types"

	"github.com/depends-on/depends-on/deploy"
)

type imageFlags []types.Image

func (f *imageFlags) String() string { return fmt.Sprint(*f) }

func (f *imageFlags) Set(v string) error {
	img, err := deploy.ParseImage(v, deploy.WebhookImage)
	if err != nil {
		return err
	}
	*f = append(*f, img)
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("render", flag.ContinueOnError)
	var images imageFlags
	fl.Var(&images, "image", "image override [NAME=]IMAGE[:TAG|@DIGEST] (NAME defaults to "+deploy.WebhookImage+"; repeatable)")
	waitImage := fl.String("wait-image", "", "pass --wait-image to the webhook (default: the image built into the binary)")
	outDir := fl.String("out-dir", "", "write each overlay to <out-dir>/<overlay name>.yaml instead of stdout")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: go run ./deploy/render [flags] KUSTOMIZATION_DIR...\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fl.NArg() == 0 {
		fl.Usage()
		return errors.New("no kustomization directory given")
	}
	opts := deploy.Options{Images: images, WaitImage: *waitImage}
	for i, dir := range fl.Args() {
		out, err := render(dir, opts)
		if err != nil {
			return err
		}
		if *outDir == "" {
			if i > 0 {
				out = append([]byte("---\n"), out...)
			}
			if _, err := os.Stdout.Write(out); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(*outDir, 0o755); err != nil {
			return err
		}
		name := filepath.Base(filepath.Clean(dir))
		if name == "." || name == string(filepath.Separator) {
			name = "manifests"
		}
		path := filepath.Join(*outDir, strings.TrimSuffix(name, ".yaml")+".yaml")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "render: %s -> %s\n", dir, path)
	}
	return nil
}

// render renders a kustomization directory on disk, else the embedded overlay
// of that name.
func render(dir string, opts deploy.Options) ([]byte, error) {
	if _, err := os.Stat(dir); err == nil {
		return deploy.Render(dir, opts)
	}
	out, err := deploy.RenderEmbedded(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: not a directory, nor an embedded overlay: %w", dir, err)
	}
	return out, nil
}
