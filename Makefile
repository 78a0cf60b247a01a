# depends-on: a mutating admission webhook that makes Pods wait for their dependencies.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

VERSION ?= dev
GO ?= go
LOCALBIN ?= $(CURDIR)/bin

.PHONY: all
all: build

##@ Development

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: build
build: ## Build all binaries into ./bin.
	$(GO) build -o $(LOCALBIN)/ ./cmd/...

STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: lint
lint: ## gofmt, go vet (also with the e2e tag) and staticcheck: no findings.
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags e2e ./test/e2e

.PHONY: test
test: lint helm-lint ## Unit + integration tests: lint, helm lint, go test -race, short fuzzing.
	HELM="$(HELM)" KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" $(GO) test -race -count=1 ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

# envtest (test/integration) needs kube-apiserver, etcd and kubectl. A non-empty
# KUBEBUILDER_ASSETS (e.g. from the offline kit in .ci/run) is used as is; only when it
# is empty does setup-envtest download ENVTEST_K8S_VERSION into $(LOCALBIN) (and print
# nothing if it cannot: the tests then fail saying KUBEBUILDER_ASSETS is not set).
# Recursively expanded and passed per recipe, so other targets never run setup-envtest.
ENVTEST_K8S_VERSION ?= 1.34.x
SETUP_ENVTEST_VERSION ?= v0.25.1
SETUP_ENVTEST ?= $(GO) run sigs.k8s.io/controller-runtime/tools/setup-envtest@$(SETUP_ENVTEST_VERSION)
# On a machine without internet that has the offline kit next to the checkout (as
# test/kind-env.sh does for the kind targets; OFFLINE_KIT= disables it), the kit's
# locally built binaries stand in for setup-envtest's download. Evaluated only by
# the recipes that use it.
OFFLINE_KIT ?= $(CURDIR)/../shared/offline
ifeq ($(strip $(KUBEBUILDER_ASSETS)),)
KUBEBUILDER_ASSETS = $(shell if [ -n "$(OFFLINE_KIT)" ] && [ -x "$(OFFLINE_KIT)/envtest-assets.sh" ]; then \
	"$(OFFLINE_KIT)/envtest-assets.sh"; else $(SETUP_ENVTEST) use $(ENVTEST_K8S_VERSION) --bin-dir $(LOCALBIN) -p path; fi)
endif

# helm: a Go module, built into ./bin on first use (deploy/chart_test.go runs
# `helm template` from $HELM and fails when it is missing).
HELM_VERSION ?= v3.22.0
HELM ?= $(LOCALBIN)/helm
CHART := deploy/chart/depends-on

.PHONY: helm
helm: ## Install helm $(HELM_VERSION) into ./bin unless $(HELM) exists.
	@if ! [ -x "$(HELM)" ] && ! command -v "$(HELM)" >/dev/null 2>&1; then \
	  echo "GOBIN=$(LOCALBIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)"; \
	  GOBIN=$(LOCALBIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); fi
	@[ -x "$(HELM)" ] || command -v "$(HELM)" >/dev/null 2>&1 || { echo "HELM=$(HELM) not found"; exit 1; }

.PHONY: helm-lint
helm-lint: helm ## helm lint the chart with both certificate paths.
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set certManager.enabled=false

.PHONY: test-integration
test-integration: ## Integration tier only: real kube-apiserver + etcd (envtest), the webhook binary, deploy/ manifests.
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" $(GO) test -race -count=1 -v ./test/integration/

.PHONY: envtest
envtest: ## Print the KUBEBUILDER_ASSETS directory the tests use (runs setup-envtest if it is empty).
	@echo "$(KUBEBUILDER_ASSETS)"

# An execution count, not a duration: Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" when a duration ends while a starved
# worker is mid-call (golang/go#75804, fixed in Go 1.27); a count only runs slower.
FUZZTIME ?= 3000x
.PHONY: fuzz
fuzz: ## Run every fuzz test (func Fuzz* in a _test.go file) for FUZZTIME each (default 3000x, executions; the seed corpora also run in make test).
	@set -e; \
	git grep -o -e '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | while IFS=: read -r file fn; do \
	  f="$${fn#func }"; pkg="./$$(dirname "$$file")"; \
	  echo "$(GO) test -run '^$$' -fuzz '^$$f$$' -fuzztime $(FUZZTIME) $$pkg"; \
	  $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null; \
	done

.PHONY: run
run: certs-local ## Run the webhook locally on https://localhost:9443/mutate with a throwaway certificate (see README).
	$(GO) run ./cmd/webhook --cert-dir $(LOCAL_CERT_DIR) --port 9443 \
	  --health-probe-bind-address 127.0.0.1:8081 --metrics-bind-address 127.0.0.1:8080 --drain-period 0s

##@ Performance (docs/performance.md)

BENCH ?= .
BENCHTIME ?= 1s

.PHONY: bench
bench: ## Go benchmarks of the webhook: parse, inject, handler vs the decode-and-allow floor (prints handler/floor).
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./webhook/

LOADGEN_DURATION ?= 10s
LOADGEN_CONCURRENCY ?= 8
LOADGEN_RATE ?= 1000

.PHONY: loadgen
loadgen: ## Load test of the real server over TLS on loopback: -mode=max, then -mode=rate (LOADGEN_DURATION each).
	$(GO) run ./test/loadgen -mode=both -duration $(LOADGEN_DURATION) -concurrency $(LOADGEN_CONCURRENCY) -rate $(LOADGEN_RATE)

.PHONY: loadgen-satisfied
loadgen-satisfied: ## The same against envtest and the real readiness service: Pods whose object dependencies are satisfied (the skip, from the cache), then the injected Pod.
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" $(GO) run ./test/loadgen -satisfied -mode=both -duration $(LOADGEN_DURATION) -concurrency $(LOADGEN_CONCURRENCY) -rate $(LOADGEN_RATE)

READINESS_RUNS ?= 30

.PHONY: readiness
readiness: ## Readiness detection of wait-for-service (tcp, http, dns) vs the docs' sleep-2s loop, READINESS_RUNS runs each.
	$(GO) run ./test/readiness -runs $(READINESS_RUNS)

READINESS_LOAD_WAITERS ?= 1000

.PHONY: readiness-load
readiness-load: ## Readiness service: READINESS_LOAD_WAITERS waiters on one Job (envtest + the real binary): watches, RSS, CPU, completion-to-answer.
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" $(GO) run ./test/readiness-load -waiters $(READINESS_LOAD_WAITERS)

##@ Images and install

IMG ?= depends-on/webhook:$(VERSION)
# The image name is written once, in webhook/config.go (WaitImageName).
WAIT_IMAGE_NAME := $(shell sed -n 's/^const WaitImageName = "\(.*\)"$$/\1/p' webhook/config.go)
WAIT_IMG ?= $(WAIT_IMAGE_NAME):$(VERSION)
READINESS_IMG ?= depends-on/readiness:$(VERSION)
DOCKER ?= docker
KUBECTL ?= kubectl
# Extra flags for docker build, e.g. --network host (printed by the offline kit's base-images.sh).
DOCKER_BUILD_FLAGS ?=
GO_IMAGE ?= golang:1.26
BASE_IMAGE ?= gcr.io/distroless/static:nonroot
# The builder container downloads modules through the same proxy as this machine.
DOCKER_GOPROXY ?= $(shell $(GO) env GOPROXY)
DOCKER_GOSUMDB ?= $(shell $(GO) env GOSUMDB)
DOCKER_GOPRIVATE ?= $(shell $(GO) env GOPRIVATE)
ARTIFACTS ?= $(CURDIR)/_artifacts
# Written by `make certs`, included by deploy/own-certs (git-ignored: holds private keys).
OWN_CERTS_DIR := deploy/own-certs/generated
CERTS_FLAGS ?=
# Localhost certificates for running the webhook outside a cluster.
LOCAL_CERT_DIR ?= $(CURDIR)/.tmp/certs
DEPLOY_TIMEOUT ?= 300s
WEBHOOK_WAIT_SECONDS ?= 120
WEBHOOK_PROBE_NAMESPACE ?= default
RENDER := $(GO) run ./deploy/render --image $(IMG) --image depends-on/readiness=$(READINESS_IMG) --wait-image $(WAIT_IMG)

# make docker-build: static binaries compiled on the host (its module and build
# caches; the -ldflags of the release Dockerfile), copied in by Dockerfile.local
# from a context directory that holds nothing else.
IMAGE_BIN_DIR ?= $(LOCALBIN)/image
IMAGE_GOARCH ?= $(shell $(GO) env GOARCH)
IMAGE_GO_BUILD = CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_GOARCH) $(GO) build -trimpath

DOCKER_BUILD_ARGS = $(DOCKER_BUILD_FLAGS) \
	--build-arg GO_IMAGE=$(GO_IMAGE) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	--build-arg GOPROXY=$(DOCKER_GOPROXY) --build-arg GOSUMDB=$(DOCKER_GOSUMDB) --build-arg GOPRIVATE=$(DOCKER_GOPRIVATE) \
	--build-arg VERSION=$(VERSION) --build-arg WAIT_IMG=$(WAIT_IMG)

.PHONY: docker-binaries
docker-binaries: ## Static linux binaries for the images into $(IMAGE_BIN_DIR).
	rm -rf $(IMAGE_BIN_DIR) && mkdir -p $(IMAGE_BIN_DIR)
	$(IMAGE_GO_BUILD) -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_BIN_DIR)/ ./cmd/wait-for-service
	$(IMAGE_GO_BUILD) -ldflags "-s -w -X main.version=$(VERSION) -X main.waitImage=$(WAIT_IMG)" -o $(IMAGE_BIN_DIR)/ ./cmd/webhook ./cmd/depends-on
	$(IMAGE_GO_BUILD) -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_BIN_DIR)/ ./cmd/readiness

.PHONY: docker-build
docker-build: docker-binaries ## Build the images $(IMG), $(WAIT_IMG) and $(READINESS_IMG) from host-built binaries (fast; Dockerfile.local).
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) -f Dockerfile.local --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
	  --target wait-for-service -t $(WAIT_IMG) $(IMAGE_BIN_DIR)
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) -f Dockerfile.local --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
	  --target webhook -t $(IMG) $(IMAGE_BIN_DIR)
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) -f Dockerfile.local --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
	  --target readiness -t $(READINESS_IMG) $(IMAGE_BIN_DIR)

.PHONY: docker-build-release
docker-build-release: ## Build the images self-contained (multi-stage Dockerfile, compiles in $(GO_IMAGE)): releases.
	$(DOCKER) build $(DOCKER_BUILD_ARGS) --target wait-for-service -t $(WAIT_IMG) .
	$(DOCKER) build $(DOCKER_BUILD_ARGS) --target readiness -t $(READINESS_IMG) .
	$(DOCKER) build $(DOCKER_BUILD_ARGS) --target webhook -t $(IMG) .

.PHONY: docker-check
docker-check: ## Smoke-test the built images: run them, user 65532, wait-for-service image < 10 MB.
	$(DOCKER) run --rm $(WAIT_IMG) --help >/dev/null
	$(DOCKER) run --rm $(WAIT_IMG) --version
	$(DOCKER) run --rm $(IMG) --version
	$(DOCKER) run --rm --entrypoint /depends-on $(IMG) version
	@for img in $(IMG) $(WAIT_IMG); do \
	  user="$$($(DOCKER) image inspect -f '{{.Config.User}}' $$img)"; \
	  case "$$user" in 65532|65532:65532) ;; *) echo "$$img runs as '$$user', want 65532"; exit 1;; esac; \
	done
	@size="$$($(DOCKER) image inspect -f '{{.Size}}' $(WAIT_IMG))"; \
	  echo "$(WAIT_IMG): $$size bytes"; \
	  if [ "$$size" -ge 10000000 ]; then echo "$(WAIT_IMG) is not under 10 MB"; exit 1; fi

.PHONY: certs
certs: ## Generate (or rotate: re-run) the CA, serving cert and kustomize component for deploy/own-certs.
	$(GO) run ./certs --out $(OWN_CERTS_DIR) $(CERTS_FLAGS)

$(OWN_CERTS_DIR)/kustomization.yaml:
	$(MAKE) certs

.PHONY: certs-local
certs-local: ## Generate certificates for localhost/127.0.0.1 into $(LOCAL_CERT_DIR) (webhook --cert-dir outside a cluster).
	$(GO) run ./certs --out $(LOCAL_CERT_DIR) --host localhost,127.0.0.1,::1 --kustomize=false

.PHONY: manifests
manifests: ## Render deploy/cert-manager and deploy/self-signed into $(ARTIFACTS)/manifests.
	$(RENDER) --out-dir $(ARTIFACTS)/manifests deploy/cert-manager deploy/self-signed

.PHONY: deploy
deploy: ## Install with cert-manager (must be installed) using $(IMG): kubectl apply + wait for the rollout.
	$(RENDER) deploy/cert-manager | $(KUBECTL) apply -f -
	$(KUBECTL) -n depends-on-system rollout status deployment/depends-on-webhook --timeout=$(DEPLOY_TIMEOUT)
	$(KUBECTL) -n depends-on-system rollout status deployment/depends-on-readiness --timeout=$(DEPLOY_TIMEOUT)
	@$(MAKE) --no-print-directory wait-webhook
	@# cert-manager < v1.12: cainjector rewrites the whole object with types that predate matchConditions.
	@if [ -z "$$($(KUBECTL) get mutatingwebhookconfiguration depends-on -o jsonpath='{.webhooks[0].matchConditions[*].name}')" ]; then \
	  echo "WARNING: MutatingWebhookConfiguration depends-on lost its matchConditions (cert-manager older than v1.12 strips them when"; \
	  echo "WARNING: injecting the caBundle). failurePolicy Fail now covers every Pod outside the excluded namespaces: upgrade"; \
	  echo "WARNING: cert-manager, or install with make deploy-self-signed. See deploy/README.md."; \
	fi

.PHONY: deploy-self-signed
deploy-self-signed: ## Install without cert-manager: the certs Job creates the CA, Secret and caBundle (re-run: rotates).
	$(KUBECTL) -n depends-on-system delete job depends-on-certs --ignore-not-found
	$(RENDER) deploy/self-signed | $(KUBECTL) apply -f -
	$(KUBECTL) -n depends-on-system wait --for=condition=Complete job/depends-on-certs --timeout=$(DEPLOY_TIMEOUT)
	$(KUBECTL) -n depends-on-system rollout status deployment/depends-on-webhook --timeout=$(DEPLOY_TIMEOUT)
	@$(MAKE) --no-print-directory wait-webhook

.PHONY: deploy-own-certs
deploy-own-certs: $(OWN_CERTS_DIR)/kustomization.yaml ## Install with the certificates from make certs (no cert-manager, no Job).
	$(RENDER) deploy/own-certs | $(KUBECTL) apply -f -
	$(KUBECTL) -n depends-on-system rollout status deployment/depends-on-webhook --timeout=$(DEPLOY_TIMEOUT)
	@$(MAKE) --no-print-directory wait-webhook

# Ready Pods are not enough: the Service routing and (cert-manager) the caBundle
# injection lag behind. A server-side dry-run of an annotated Pod goes through
# the API server -> Service -> TLS -> webhook path without creating anything.
.PHONY: wait-webhook
wait-webhook: ## Wait until the API server gets injections from the webhook (server-side dry-run).
	@deadline=$$(( $$(date +%s) + $(WEBHOOK_WAIT_SECONDS) )); \
	while :; do \
	  out="$$($(KUBECTL) -n $(WEBHOOK_PROBE_NAMESPACE) run depends-on-probe --dry-run=server --restart=Never \
	    --image=$(WAIT_IMG) --annotations=depends-on.dev/services=kubernetes.default:443 \
	    -o jsonpath='{.spec.initContainers[*].name}' 2>&1)" && [ -n "$$out" ] && break; \
	  case "$$out" in *'admission webhook "inject.depends-on.dev" denied'*) break;; esac; \
	  if [ "$$(date +%s)" -ge "$$deadline" ]; then echo "webhook not serving after $(WEBHOOK_WAIT_SECONDS)s: $$out"; exit 1; fi; \
	  sleep 2; \
	done; echo "webhook serving (injected: $$out)"

.PHONY: undeploy
undeploy: ## Remove the webhook configuration first, then everything else (either install).
	$(KUBECTL) delete mutatingwebhookconfiguration depends-on --ignore-not-found
	$(GO) run ./deploy/render deploy/self-signed | $(KUBECTL) delete --ignore-not-found -f -

##@ kind: e2e tier and demo
# Tools and sources come from the environment, defaulted by test/kind-env.sh: KIND
# (kind v0.30.0, installed into ./bin if needed), KUBECTL, KIND_NODE_IMAGE
# (kindest/node:v1.34.0), CERT_MANAGER_MANIFEST (upstream release v1.19.1),
# CERT_MANAGER_IMAGES. With none of KIND_NODE_IMAGE/CERT_MANAGER_MANIFEST set and
# ../shared/offline/all.sh present (offline CI machines), the kit's stand-ins are used.

# e2e knobs (environment): KIND_CLUSTER (depends-on-e2e; an existing cluster is
# reused and kept), E2E_KEEP=1 (keep the cluster), E2E_SKIP_BUILD=1, E2E_IMG, E2E_WAIT_IMG.
E2E_TIMEOUT ?= 60m
E2E_FLAGS ?=

.PHONY: e2e
e2e: helm ## Kind tier (test/e2e): build and load the images, cert-manager, depends-on, the docs' examples and more.
	. test/kind-env.sh && HELM="$(HELM)" $(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) -parallel 8 ./test/e2e $(E2E_FLAGS)

.PHONY: demo
demo: ## Kind cluster depends-on-demo with cert-manager, depends-on and the docs' two examples, narrated.
	test/demo.sh

.PHONY: demo-clean
demo-clean: ## Delete the demo cluster.
	test/demo.sh clean

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-20s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
