package readiness

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reviewer answers TokenReviews from a table keyed by token and counts calls.
type reviewer struct {
	answers map[string]authenticationv1.TokenReviewStatus
	err     error
	calls   int
}

func (r *reviewer) Create(_ context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	if len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != Audience {
		return nil, fmt.Errorf("review asked for audiences %v", tr.Spec.Audiences)
	}
	out := tr.DeepCopy()
	out.Status = r.answers[tr.Spec.Token]
	return out, nil
}

func podUser(ns, sa, pod, uid string) authenticationv1.UserInfo {
	u := authenticationv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + sa, Extra: map[string]authenticationv1.ExtraValue{}}
	if pod != "" {
		u.Extra[ExtraPodName] = authenticationv1.ExtraValue{pod}
		u.Extra[ExtraPodUID] = authenticationv1.ExtraValue{uid}
	}
	return u
}

func jwtWithExp(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix())) + ".sig"
}

func TestTokenReviewAuthenticator(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience}, User: podUser("app", "default", "web-1", "uid-1")}
	r := &reviewer{answers: map[string]authenticationv1.TokenReviewStatus{
		"good":     ok,
		"forged":   {Authenticated: false, Error: "invalid signature"},
		"audience": {Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"}, User: podUser("app", "default", "web-1", "uid-1")},
		"user":     {Authenticated: true, Audiences: []string{Audience}, User: authenticationv1.UserInfo{Username: "alice"}},
		"unbound":  {Authenticated: true, Audiences: []string{Audience}, User: podUser("app", "default", "", "")},
	}}
	a := NewTokenReviewAuthenticator(r, TokenReviewOptions{Now: func() time.Time { return now }})
	ctx := context.Background()

	id, err := a.Authenticate(ctx, "good")
	if err != nil || id != (Identity{Namespace: "app", ServiceAccount: "default", PodName: "web-1", PodUID: "uid-1"}) {
		t.Fatalf("good token: %+v, %v", id, err)
	}
	for _, tc := range []struct{ token, want string }{
		{"", "no bearer token"},
		{"forged", "not authenticated: invalid signature"},
		{"audience", "lack depends-on.dev/readiness"},
		{"user", `user "alice" is not a ServiceAccount`},
		{"unbound", "not bound to a Pod"},
		{"unknown", "not authenticated"},
		{strings.Repeat("x", 17<<10), "longer than"},
	} {
		_, err := a.Authenticate(ctx, tc.token)
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("token %.10q: err %v, want ErrUnauthenticated containing %q", tc.token, err, tc.want)
		}
	}

	// Positive answers are cached up to a minute, negative ones never.
	calls := r.calls
	if _, err := a.Authenticate(ctx, "good"); err != nil || r.calls != calls {
		t.Errorf("cached good token: err %v, %d new reviews", err, r.calls-calls)
	}
	if _, err := a.Authenticate(ctx, "forged"); err == nil || r.calls != calls+1 {
		t.Errorf("forged token: err %v, %d new reviews, want 1", err, r.calls-calls)
	}
	now = now.Add(61 * time.Second)
	calls = r.calls
	if _, err := a.Authenticate(ctx, "good"); err != nil || r.calls != calls+1 {
		t.Errorf("after a minute: err %v, %d new reviews, want 1", err, r.calls-calls)
	}
	// Never past the token's own exp.
	base := now
	shortExp := jwtWithExp(base.Add(10 * time.Second))
	r.answers[shortExp] = ok
	_, _ = a.Authenticate(ctx, shortExp)
	now = base.Add(5 * time.Second)
	calls = r.calls
	_, _ = a.Authenticate(ctx, shortExp)
	if r.calls != calls {
		t.Errorf("short-lived token reviewed again before its exp")
	}
	now = base.Add(11 * time.Second)
	_, _ = a.Authenticate(ctx, shortExp)
	if r.calls != calls+1 {
		t.Errorf("short-lived token served from cache past its exp")
	}

	// A failing API is not a refusal.
	r.err = errors.New("connection refused")
	_, err = a.Authenticate(ctx, "new-token")
	if err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Errorf("API failure: %v, want a non-ErrUnauthenticated error", err)
	}
}

func TestTokenReviewCacheBounded(t *testing.T) {
	r := &reviewer{answers: map[string]authenticationv1.TokenReviewStatus{}}
	for i := range 100 {
		r.answers[fmt.Sprint(i)] = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience}, User: podUser("a", "b", "p", "u")}
	}
	a := NewTokenReviewAuthenticator(r, TokenReviewOptions{CacheSize: 10})
	for i := range 100 {
		if _, err := a.Authenticate(context.Background(), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.cache); n > 10 {
		t.Errorf("cache holds %d entries, bound 10", n)
	}
}

type namespaces map[string]map[string]string

func (n namespaces) GetNamespace(name string) (*corev1.Namespace, error) {
	l, ok := n[name]
	if !ok {
		return nil, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}, nil
}

func TestNamespaceAuthorizer(t *testing.T) {
	a := NamespaceAuthorizer{Namespaces: namespaces{
		"app":    {},
		"shared": {LabelShared: "true"},
		"closed": {LabelShared: "false"},
	}}
	who := Identity{Namespace: "app", PodName: "p"}
	for _, tc := range []struct {
		ns      string
		wantErr string
	}{
		{"app", ""},
		{"shared", ""},
		{"closed", `namespace "closed" does not share its objects with namespace "app": label it depends-on.dev/shared=true`},
		{"absent", `namespace "absent" does not share its objects with namespace "app": label it depends-on.dev/shared=true`},
	} {
		err := a.Authorize(who, tc.ns)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.ns, err)
			}
			continue
		}
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want ErrForbidden with %q", tc.ns, err, tc.wantErr)
		}
	}
}
