// Package readinessenv runs the real readiness service (./cmd/readiness) as a
// child process against a real API server (envtest), the way deploy/readiness
// installs it: its own ServiceAccount, the ClusterRole and Role from the
// manifests, a serving certificate from a test CA. The integration tier and
// the load tool (test/readiness-load) share it.
package readinessenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook/readiness"
)

// Build compiles ./cmd/readiness from repoRoot into dir.
func Build(repoRoot, dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "readiness")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/readiness")...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/readiness: %v\n%s", err, out)
	}
	return bin, nil
}

// Install applies what deploy/readiness installs except the workload (the
// Namespace, ServiceAccount, RBAC, state ConfigMap) and writes a kubeconfig
// that authenticates as the service's ServiceAccount, so the process runs
// with exactly the manifests' permissions.
func Install(ctx context.Context, cfg *rest.Config, c client.Client, dir string) (kubeconfig string, err error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deploy.Namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create namespace %s: %w", deploy.Namespace, err)
	}
	deployDir, err := deploy.Dir()
	if err != nil {
		return "", err
	}
	out, err := deploy.Render(filepath.Join(deployDir, "readiness"), deploy.Options{})
	if err != nil {
		return "", err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", err
		}
		switch u.GetKind() {
		case "Deployment", "Service", "PodDisruptionBudget", "":
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("depends-on-integration"), client.ForceOwnership); err != nil {
			return "", fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(deploy.Namespace).CreateToken(ctx, deploy.ReadinessName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for ServiceAccount %s: %w", deploy.ReadinessName, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["readiness"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["readiness"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "readiness"}
	kc.CurrentContext = "readiness"
	kubeconfig = filepath.Join(dir, "readiness.kubeconfig")
	return kubeconfig, clientcmd.WriteToFile(*kc, kubeconfig)
}

// Process is the readiness binary running on loopback ports.
type Process struct {
	Bin, CertDir, Kubeconfig, LogPath string
	Port, HealthPort, MetricsPort     int
	ExtraArgs                         []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// NewProcess issues a serving certificate for 127.0.0.1 from ca into dir and
// picks free ports.
func NewProcess(bin, kubeconfig, dir string, ca *certgen.CA) (*Process, error) {
	b, err := certgen.Generate(certgen.Options{CA: ca, NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	p := &Process{Bin: bin, Kubeconfig: kubeconfig, CertDir: filepath.Join(dir, "readiness-certs"), LogPath: filepath.Join(dir, "readiness.log")}
	if err := b.WriteFiles(p.CertDir); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	p.Port, p.HealthPort, p.MetricsPort = ports[0], ports[1], ports[2]
	return p, nil
}

// URL is the base URL of the API.
func (p *Process) URL() string { return "https://" + loopback(p.Port) }

// MetricsURL is the /metrics URL.
func (p *Process) MetricsURL() string { return "http://" + loopback(p.MetricsPort) + "/metrics" }

// Pid of the running process (0 if none).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Start runs the binary and waits for /readyz.
func (p *Process) Start() error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return errors.New("readiness already running")
	}
	log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	cmd := exec.Command(p.Bin,
		"--host=127.0.0.1",
		"--port="+strconv.Itoa(p.Port),
		"--cert-dir="+p.CertDir,
		"--health-probe-bind-address="+loopback(p.HealthPort),
		"--metrics-bind-address="+loopback(p.MetricsPort),
		"--kubeconfig="+p.Kubeconfig,
		"--namespace="+deploy.Namespace,
		"--drain-period=0s",
		"--shutdown-timeout=5s",
		"--zap-log-level=debug",
	)
	cmd.Args = append(cmd.Args, p.ExtraArgs...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		p.mu.Unlock()
		return fmt.Errorf("start readiness: %w", err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	p.mu.Unlock()

	deadline := time.Now().Add(time.Minute)
	hc := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("readiness exited before it was ready (%v); log tail:\n%s", p.err, p.LogTail(30))
		default:
		}
		if resp, err := hc.Get("http://" + loopback(p.HealthPort) + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = p.Stop()
	return fmt.Errorf("readiness not ready within a minute; log tail:\n%s", p.LogTail(30))
}

// Stop sends SIGTERM and waits (SIGKILL after 30s).
func (p *Process) Stop() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd, p.exited = nil, nil
	if p.err != nil {
		return fmt.Errorf("readiness exit: %w", p.err)
	}
	return nil
}

// LogTail returns the last n lines of the log.
func (p *Process) LogTail(n int) string {
	data, _ := os.ReadFile(p.LogPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Client calls /v1/wait like wait-for-service does (HTTPS trusting the CA).
type Client struct {
	Base string
	HTTP *http.Client
}

// NewClient trusts caPEM. Each client has its own connection pool.
func NewClient(base string, caPEM []byte, maxConns int) *Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns,
		ForceAttemptHTTP2:   false,
	}
	return &Client{Base: base, HTTP: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// Reply is one /v1/wait response.
type Reply struct {
	Code   int
	Answer readiness.Answer
	Error  string
}

// Wait calls GET /v1/wait.
func (c *Client) Wait(ctx context.Context, token, target, seen string, wait time.Duration) (Reply, error) {
	q := url.Values{"target": {target}}
	if seen != "" {
		q.Set("seen", seen)
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+readiness.WaitPath+"?"+q.Encode(), nil)
	if err != nil {
		return Reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Reply{}, err
	}
	r := Reply{Code: resp.StatusCode}
	var v struct {
		readiness.Answer
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return r, fmt.Errorf("%s: body %q: %w", resp.Status, body, err)
	}
	r.Answer, r.Error = v.Answer, v.Error
	return r, nil
}

// PodToken creates ServiceAccount sa (if needed), a Pod running as it, and a
// token bound to that Pod with the readiness audience (or audiences).
func PodToken(ctx context.Context, cs kubernetes.Interface, ns, sa, pod string, audiences ...string) (*corev1.Pod, string, error) {
	if len(audiences) == 0 {
		audiences = []string{readiness.Audience}
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, "", err
	}
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		p, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa,
				Containers:         []corev1.Container{{Name: "app", Image: "busybox:1.36"}},
			},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: ptr.To[int64](600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("token for Pod %s/%s: %w", ns, pod, err)
	}
	return p, tr.Status.Token, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
