package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/webhook"
)

// injectorFlags are the flags inject and lint share with the webhook.
type injectorFlags struct {
	config    func() (webhook.Config, error)
	namespace *string
}

func bindInjectorFlags(fs *flag.FlagSet) *injectorFlags {
	return &injectorFlags{
		config:    webhook.BindConfigFlags(fs, defaultWaitImage(), nil),
		namespace: fs.String("namespace", "default", "namespace of objects that set no metadata.namespace (the webhook uses the request's)"),
	}
}

func (f *injectorFlags) injector() (*webhook.Injector, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, err
	}
	return webhook.NewInjector(cfg)
}

// openInput opens a file, or standard input for "-".
func openInput(env *cmdEnv, name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(env.stdin), nil
	}
	return os.Open(name)
}

func injectCommand() command {
	return command{
		name:    "inject",
		summary: "write manifests with what the webhook would inject (like istioctl kube-inject)",
		run:     runInject,
	}
}

func runInject(_ context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	file := fs.String("f", "", "manifest file to read (YAML, multi-document, or JSON; - for standard input)")
	inj := bindInjectorFlags(fs)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s inject -f FILE|- [flags]\n\n", programName)
		fmt.Fprintf(w, "Writes the manifests of FILE to standard output with exactly what the webhook\n"+
			"would inject into each Pod and Pod template (Deployment, StatefulSet, DaemonSet,\n"+
			"ReplicaSet, ReplicationController, Job, CronJob, PodTemplate, and Lists of them).\n"+
			"Documents without depends-on.dev/ annotations are written unchanged; changed ones\n"+
			"are re-encoded with sorted keys (as sigs.k8s.io/yaml does), so output is stable.\n"+
			"Injecting the output again changes nothing.\n\n")
		fmt.Fprintf(w, "Flags (the injection flags are the webhook's, with the same defaults):\n")
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExit codes: %d written, %d a manifest is denied or unreadable (nothing is written), %d usage error.\n", exitOK, exitFailed, exitUsage)
	}
	if code, ok := parseFlags(fs, env, args); !ok {
		return code
	}
	if *file == "" {
		fmt.Fprintf(env.stderr, "%s inject: -f FILE or -f - is required\n", programName)
		return exitUsage
	}
	in, err := inj.injector()
	if err != nil {
		fmt.Fprintf(env.stderr, "%s inject: %v\n", programName, err)
		return exitUsage
	}
	out, err := injectInput(env, in, *file, *inj.namespace)
	if err != nil {
		fmt.Fprintf(env.stderr, "%s inject: %v\n", programName, err)
		return exitFailed
	}
	if _, err := env.stdout.Write(out); err != nil {
		fmt.Fprintf(env.stderr, "%s inject: %v\n", programName, err)
		return exitFailed
	}
	return exitOK
}

// injectInput returns the injected form of the input name. Every denial is
// reported (each as location: the webhook's message), not only the first.
func injectInput(env *cmdEnv, in *webhook.Injector, name, namespace string) ([]byte, error) {
	r, err := openInput(env, name)
	if err != nil {
		return nil, err
	}
	docs, isJSON, err := readDocuments(r)
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var buf bytes.Buffer
	var errs []error
	for i, d := range docs {
		out, changed, err := visit(d.json, func(t podTemplate) ([]byte, error) {
			out, err := injectTemplate(in, t, namespace)
			if err != nil {
				return nil, located{fmt.Errorf("%s:%d %s: %w", name, d.index, t.ref, err)}
			}
			return out, nil
		})
		if err != nil {
			errs = append(errs, wrapLocation(name, d.index, err))
			continue
		}
		switch {
		case isJSON && changed:
			if err := json.Indent(&buf, out, "", "  "); err != nil {
				return nil, err
			}
			buf.WriteByte('\n')
		case isJSON:
			buf.Write(d.src)
			buf.WriteByte('\n')
		default:
			if i > 0 {
				buf.WriteString("---\n")
			}
			if changed {
				y, err := yaml.JSONToYAML(out)
				if err != nil {
					return nil, err
				}
				buf.Write(y)
			} else {
				buf.Write(d.src)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// located is an error already prefixed with file:document kind/name.
type located struct{ error }

func (l located) Unwrap() error { return l.error }

// wrapLocation prefixes err with file:document unless a template did.
func wrapLocation(name string, index int, err error) error {
	var l located
	if errors.As(err, &l) {
		return err
	}
	return fmt.Errorf("%s:%d: %w", name, index, err)
}
