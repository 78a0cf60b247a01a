package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/depends-on/depends-on/webhook"
)

func lintCommand() command {
	return command{
		name:    "lint",
		summary: "check the depends-on.dev/ annotations of manifests, as the webhook would (for CI)",
		run:     runLint,
	}
}

func runLint(_ context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	inj := bindInjectorFlags(fs)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s lint [flags] FILE... (- for standard input)\n\n", programName)
		fmt.Fprintf(w, "Checks every Pod and Pod template of the manifests (YAML, multi-document, or\n"+
			"JSON) the way the webhook does, and prints each denial as\n"+
			"  FILE:DOCUMENT KIND/NAME: the webhook's message\n"+
			"and each admission warning (kubectl shows them too) as\n"+
			"  FILE:DOCUMENT KIND/NAME: warning: the webhook's warning\n"+
			"where DOCUMENT is the 1-based index of the document in FILE.\n\n")
		fmt.Fprintf(w, "Flags (the injection flags are the webhook's, with the same defaults):\n")
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExit codes: %d every template is valid (warnings or not), %d a template would be denied or a file is unreadable, %d usage error.\n", exitOK, exitFailed, exitUsage)
	}
	fs.SetOutput(env.stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(env.stderr, "%s lint: no FILE given (- reads standard input)\n", programName)
		return exitUsage
	}
	in, err := inj.injector()
	if err != nil {
		fmt.Fprintf(env.stderr, "%s lint: %v\n", programName, err)
		return exitUsage
	}
	var docs, templates, annotated, problems, warnings int
	for _, name := range fs.Args() {
		r, err := openInput(env, name)
		if err != nil {
			fmt.Fprintf(env.stderr, "%v\n", err)
			problems++
			continue
		}
		ds, _, err := readDocuments(r)
		r.Close()
		if err != nil {
			fmt.Fprintf(env.stderr, "%s: %v\n", name, err)
			problems++
			continue
		}
		for _, d := range ds {
			docs++
			_, _, err := visit(d.json, func(t podTemplate) ([]byte, error) {
				templates++
				pod, err := webhook.ReadPod(t.raw)
				if err == nil && webhook.HasAnnotations(pod.Annotations) {
					annotated++
					var m webhook.Mutation
					if m, err = in.Mutate(pod, templateNamespace(t, *inj.namespace)); err == nil {
						_, err = injectTemplate(in, t, *inj.namespace)
					}
					for _, w := range m.Warnings {
						fmt.Fprintf(env.stderr, "%s:%d %s: warning: %s\n", name, d.index, t.ref, w)
						warnings++
					}
				}
				if err != nil {
					fmt.Fprintf(env.stderr, "%s:%d %s: %v\n", name, d.index, t.ref, err)
					problems++
				}
				// Nothing is rewritten: lint only reads.
				return nil, nil
			})
			if err != nil {
				fmt.Fprintf(env.stderr, "%s:%d: %v\n", name, d.index, err)
				problems++
			}
		}
	}
	if problems > 0 {
		fmt.Fprintf(env.stderr, "%s lint: %d %s\n", programName, problems, plural(problems, "problem"))
		return exitFailed
	}
	ok := "ok"
	if warnings > 0 {
		ok = fmt.Sprintf("ok, %d %s", warnings, plural(warnings, "warning"))
	}
	fmt.Fprintf(env.stdout, "%s lint: %d %s, %d %s, %d %s (%d with depends-on annotations): %s\n", programName,
		len(fs.Args()), plural(len(fs.Args()), "file"), docs, plural(docs, "document"), templates, plural(templates, "pod template"), annotated, ok)
	return exitOK
}

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// templateNamespace is t's namespace, or def when it sets none (the webhook
// uses the request's), as injectTemplate resolves it.
func templateNamespace(t podTemplate, def string) string {
	if t.namespace != "" {
		return t.namespace
	}
	return def
}
