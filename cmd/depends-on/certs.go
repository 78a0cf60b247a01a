package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/certs/incluster"
)

type stringList []string

func (l *stringList) String() string { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func certsCommand() command {
	return command{
		name:    "certs",
		summary: "create or rotate the CA, serving Secrets and caBundle in the cluster (the deploy/self-signed Job)",
		run:     runCerts,
	}
}

func runCerts(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	defaultNS := env.getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = certgen.DefaultNamespace
	}
	var servings, webhookConfigs stringList
	var (
		namespace     = fs.String("namespace", defaultNS, "namespace of the Secrets (the default is $POD_NAMESPACE when set)")
		caSecret      = fs.String("ca-secret", "depends-on-ca", "Secret holding the CA (tls.crt, tls.key) and the trust bundle (ca.crt)")
		clusterDomain = fs.String("cluster-domain", certgen.DefaultClusterDomain, "cluster DNS domain, for the names of service=")
		validity      = fs.Duration("validity", incluster.DefaultCertValidity, "validity of each serving certificate")
		caValidity    = fs.Duration("ca-validity", incluster.DefaultCAValidity, "validity of a new CA")
		caRenewBefore = fs.Duration("ca-renew-before", incluster.DefaultCARenewBefore, "replace the CA when it expires within this; the old one stays trusted until it expires")
		waitFor       = fs.Duration("wait", incluster.DefaultWait, "how long to wait for the webhook configurations to exist")
		kubeconfig    = fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
	)
	fs.Var(&servings, "serving", "serving certificate secret=NAME[,service=SVC][,dns=NAME]... (repeatable; default secret="+certgen.DefaultSecretName+",service="+certgen.DefaultService+")")
	fs.Var(&webhookConfigs, "webhook-configuration", "MutatingWebhookConfiguration whose caBundle to set (repeatable; default "+certgen.DefaultWebhookConfiguration+")")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: %s certs [flags]

Creates a private CA (kept in --ca-secret; replaced only near expiry), issues a
new serving certificate into each --serving Secret (kubernetes.io/tls: tls.crt,
tls.key, ca.crt) and writes the trusted CAs into the caBundle of each
--webhook-configuration. Run again to rotate the serving certificates.

`, programName)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, env, args); !ok {
		return code
	}
	if len(servings) == 0 {
		servings = stringList{"secret=" + certgen.DefaultSecretName + ",service=" + certgen.DefaultService}
	}
	if len(webhookConfigs) == 0 {
		webhookConfigs = stringList{certgen.DefaultWebhookConfiguration}
	}
	opts := incluster.Options{
		Namespace:             *namespace,
		CASecret:              *caSecret,
		WebhookConfigurations: webhookConfigs,
		CAValidity:            *caValidity,
		CertValidity:          *validity,
		CARenewBefore:         *caRenewBefore,
		Wait:                  *waitFor,
		Labels:                map[string]string{"app.kubernetes.io/name": "depends-on", "app.kubernetes.io/part-of": "depends-on", "app.kubernetes.io/managed-by": "depends-on-certs"},
		Log: funcr.New(func(prefix, args string) {
			fmt.Fprintln(env.stderr, args)
		}, funcr.Options{LogTimestamp: true}),
	}
	for _, s := range servings {
		spec, err := incluster.ParseServing(s)
		if err != nil {
			fmt.Fprintf(env.stderr, "%s certs: --serving: %v\n", programName, err)
			return exitUsage
		}
		opts.Servings = append(opts.Servings, spec.Resolve(*namespace, *clusterDomain))
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		fmt.Fprintf(env.stderr, "%s certs: kubeconfig: %v\n", programName, err)
		return exitFailed
	}
	cfg.UserAgent = programName + "-certs/" + version
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(env.stderr, "%s certs: %v\n", programName, err)
		return exitFailed
	}
	res, err := incluster.Run(ctx, cs, opts)
	if err != nil {
		fmt.Fprintf(env.stderr, "%s certs: %v\n", programName, err)
		return exitFailed
	}
	what := "kept the CA"
	if res.CARenewed {
		what = "created a new CA"
	}
	fmt.Fprintf(env.stdout, "%s certs: %s (valid until %s, %d CA(s) trusted), issued %s\n", programName, what,
		res.CANotAft.UTC().Format("2006-01-02"), res.Trusted, strings.Join(res.Issued, ", "))
	return exitOK
}
