package readiness

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Audience is the audience of the projected token the injected container sends.
const Audience = "depends-on.dev/readiness"

// The user.extra keys of a token bound to a Pod.
const (
	ExtraPodName = "authentication.kubernetes.io/pod-name"
	ExtraPodUID  = "authentication.kubernetes.io/pod-uid"
)

const serviceAccountPrefix = "system:serviceaccount:"

// ErrUnauthenticated wraps every reason a token is refused (401).
var ErrUnauthenticated = errors.New("unauthenticated")

// Identity is who asks: the Pod a projected ServiceAccount token is bound to.
type Identity struct {
	Namespace      string
	ServiceAccount string
	PodName        string
	PodUID         types.UID
}

// Authenticator turns a bearer token into the Pod it was issued for. Errors
// wrapping ErrUnauthenticated mean the token is refused; others are failures
// to check it (the client should retry).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// TokenReviewer creates TokenReviews; the typed client's
// AuthenticationV1().TokenReviews() satisfies it.
type TokenReviewer interface {
	Create(ctx context.Context, review *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error)
}

// TokenReviewOptions configure NewTokenReviewAuthenticator.
type TokenReviewOptions struct {
	// CacheTTL bounds how long a positive review is reused (default and max 1 minute).
	CacheTTL time.Duration
	// CacheSize bounds the number of cached reviews (default 10000).
	CacheSize int
	// MaxTokenLen refuses longer tokens before any API call (default 16 KiB).
	MaxTokenLen int
	// Now is the clock (tests).
	Now func() time.Time
}

// TokenReviewAuthenticator validates tokens with the API server's TokenReview
// and caches positive answers briefly (never past the token's own expiry).
type TokenReviewAuthenticator struct {
	reviewer TokenReviewer
	opts     TokenReviewOptions

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedIdentity
}

type cachedIdentity struct {
	id      Identity
	expires time.Time
}

// NewTokenReviewAuthenticator returns an Authenticator backed by r.
func NewTokenReviewAuthenticator(r TokenReviewer, o TokenReviewOptions) *TokenReviewAuthenticator {
	if o.CacheTTL <= 0 || o.CacheTTL > time.Minute {
		o.CacheTTL = time.Minute
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	if o.MaxTokenLen <= 0 {
		o.MaxTokenLen = 16 << 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &TokenReviewAuthenticator{reviewer: r, opts: o, cache: map[[sha256.Size]byte]cachedIdentity{}}
}

// Authenticate implements Authenticator.
func (a *TokenReviewAuthenticator) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	if len(token) > a.opts.MaxTokenLen {
		return Identity{}, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthenticated, a.opts.MaxTokenLen)
	}
	key := sha256.Sum256([]byte(token))
	now := a.opts.Now()
	a.mu.Lock()
	c, ok := a.cache[key]
	if ok && now.Before(c.expires) {
		a.mu.Unlock()
		return c.id, nil
	}
	if ok {
		delete(a.cache, key)
	}
	a.mu.Unlock()

	review, err := a.reviewer.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("TokenReview: %w", err)
	}
	id, err := identityFromReview(review)
	if err != nil {
		return Identity{}, err
	}
	expires := now.Add(a.opts.CacheTTL)
	if exp, ok := tokenExpiry(token); ok && exp.Before(expires) {
		expires = exp
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.opts.CacheSize {
		a.evictLocked(now)
	}
	if len(a.cache) < a.opts.CacheSize {
		a.cache[key] = cachedIdentity{id: id, expires: expires}
	}
	return id, nil
}

// evictLocked drops expired entries, then (still full) an arbitrary half, so
// the cache stays bounded whatever clients send.
func (a *TokenReviewAuthenticator) evictLocked(now time.Time) {
	for k, c := range a.cache {
		if !now.Before(c.expires) {
			delete(a.cache, k)
		}
	}
	n := len(a.cache) / 2
	for k := range a.cache {
		if len(a.cache) <= n {
			break
		}
		delete(a.cache, k)
	}
}

func identityFromReview(r *authenticationv1.TokenReview) (Identity, error) {
	st := r.Status
	if !st.Authenticated {
		msg := "token not authenticated"
		if st.Error != "" {
			msg += ": " + st.Error
		}
		return Identity{}, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	if !slices.Contains(st.Audiences, Audience) {
		return Identity{}, fmt.Errorf("%w: token audiences %v lack %s", ErrUnauthenticated, st.Audiences, Audience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return Identity{}, fmt.Errorf("%w: user %q is not a ServiceAccount", ErrUnauthenticated, st.User.Username)
	}
	pod, uid := st.User.Extra[ExtraPodName], st.User.Extra[ExtraPodUID]
	if len(pod) != 1 || len(uid) != 1 || pod[0] == "" || uid[0] == "" {
		return Identity{}, fmt.Errorf("%w: token of %s is not bound to a Pod (want a projected serviceAccountToken)", ErrUnauthenticated, st.User.Username)
	}
	return Identity{Namespace: ns, ServiceAccount: sa, PodName: pod[0], PodUID: types.UID(uid[0])}, nil
}

// tokenExpiry reads the exp claim of a JWT without verifying it: only used to
// shorten the cache lifetime of a token the API server has just accepted.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}
