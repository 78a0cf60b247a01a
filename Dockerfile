# Release build, self-contained: two images from one build:
#   docker build --target webhook          -t depends-on/webhook:dev .
#   docker build --target wait-for-service -t depends-on/wait-for-service:dev .
# (make docker-build-release does both, with VERSION, WAIT_IMG and GOPROXY filled
# in. make docker-build instead compiles on the host, with its caches, and
# copies the binaries in with Dockerfile.local.)
#   docker build --target readiness        -t depends-on/readiness:dev .
#
# Works with the classic builder and with BuildKit: no "# syntax" line (that
# would pull a frontend image) and no RUN --mount (the classic builder rejects
# it). Module downloads are cached in their own layer, keyed on go.mod/go.sum.
ARG GO_IMAGE=golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static:nonroot

FROM ${GO_IMAGE} AS builder
# The module proxy to download from (make passes `go env GOPROXY`).
ARG GOPROXY=https://proxy.golang.org,direct
ARG GOSUMDB
ARG GONOSUMDB
ARG GOPRIVATE
ENV GOPROXY=${GOPROXY} GOSUMDB=${GOSUMDB} GONOSUMDB=${GONOSUMDB} GOPRIVATE=${GOPRIVATE} \
    CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .

# Stages are in build order: the classic builder runs every stage up to the
# --target, so wait-for-service never needs the webhook to compile.
FROM builder AS build-wait-for-service
# Set by BuildKit (docker buildx --platform); empty with the classic builder,
# which then builds for the build machine's platform.
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/wait-for-service ./cmd/wait-for-service

# The image every annotated Pod pulls: one static binary, no shell.
FROM ${BASE_IMAGE} AS wait-for-service
ARG VERSION=dev
LABEL org.opencontainers.image.title="depends-on wait-for-service" \
      org.opencontainers.image.description="Init container that waits for a Pod's dependencies" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-wait-for-service /out/wait-for-service /wait-for-service
USER 65532:65532
ENTRYPOINT ["/wait-for-service"]

FROM builder AS build-readiness
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/readiness ./cmd/readiness

# The readiness service (issue 9): answers the wait containers' object waits.
FROM ${BASE_IMAGE} AS readiness
ARG VERSION=dev
LABEL org.opencontainers.image.title="depends-on readiness" \
      org.opencontainers.image.description="Tells depends-on wait containers when Jobs, workloads and endpoints are ready" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-readiness /out/readiness /readiness
USER 65532:65532
ENTRYPOINT ["/readiness"]

FROM builder AS build-webhook
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# The default of --wait-image: make passes WAIT_IMG, the tag of the image above.
ARG WAIT_IMG=depends-on/wait-for-service:${VERSION}
RUN GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.waitImage=${WAIT_IMG}" \
      -o /out/ ./cmd/webhook ./cmd/depends-on

# Last, so a plain `docker build .` produces the webhook.
FROM ${BASE_IMAGE} AS webhook
ARG VERSION=dev
LABEL org.opencontainers.image.title="depends-on webhook" \
      org.opencontainers.image.description="Mutating admission webhook that injects wait-for-service init containers" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-webhook /out/webhook /out/depends-on /
USER 65532:65532
ENTRYPOINT ["/webhook"]
