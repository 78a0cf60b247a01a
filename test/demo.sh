#!/usr/bin/env bash
# make demo: a kind cluster with cert-manager and depends-on, then the docs' two
# init-container examples from examples/, narrated with kubectl output.
#
#   test/demo.sh          create (or reuse) the cluster and run the demo
#   test/demo.sh clean    delete the cluster
#
# Env: DEMO_CLUSTER (depends-on-demo), VERSION (dev: images depends-on/webhook:dev and
# depends-on/wait-for-service:dev), DEMO_NAMESPACE (default), and the tools and sources of
# test/kind-env.sh (KIND, KUBECTL, KIND_NODE_IMAGE, CERT_MANAGER_MANIFEST, ...).
# kind adds the context kind-$DEMO_CLUSTER to $KUBECONFIG (default ~/.kube/config);
# every kubectl call here names that context explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${DEMO_CLUSTER:-depends-on-demo}"
NS="${DEMO_NAMESPACE:-default}"
VERSION="${VERSION:-dev}"
IMG="depends-on/webhook:$VERSION"
WAIT_IMG="depends-on/wait-for-service:$VERSION"
READINESS_IMG="depends-on/readiness:$VERSION"

bold() { if [ -t 1 ]; then printf '\n\033[1m==> %s\033[0m\n' "$*"; else printf '\n==> %s\n' "$*"; fi; }
say() { printf '    %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

# shellcheck source=kind-env.sh
. test/kind-env.sh

k() { "$KUBECTL" --context "kind-$CLUSTER" "$@"; }
# Show a command, then run it.
show() { printf '$ kubectl %s\n' "$*"; k "$@"; }

cluster_exists() { "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

if [ "${1:-}" = clean ]; then
	if cluster_exists; then
		"$KIND" delete cluster --name "$CLUSTER"
	else
		echo "no kind cluster $CLUSTER"
	fi
	exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [clean]"

T0=$SECONDS
tmp="$(mktemp -d)"
trap 'if [ -n "${build_pid:-}" ]; then kill "$build_pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT

# Phase times, printed at the end: phase NAME closes the previous phase.
phases=()
phase_name=""
phase_start=$SECONDS
phase() {
	[ -z "$phase_name" ] || phases+=("$(printf '%-44s %4d s' "$phase_name" $((SECONDS - phase_start)))")
	phase_name="$1"
	phase_start=$SECONDS
}

# The images build (host-built binaries: seconds on a warm machine) while kind
# creates the cluster.
bold "Building the images $IMG and $WAIT_IMG (make docker-build, in the background)"
build_start=$(date +%s)
(
	rc=0
	make --no-print-directory docker-build VERSION="$VERSION" IMG="$IMG" WAIT_IMG="$WAIT_IMG" READINESS_IMG="$READINESS_IMG" >"$tmp/build.log" 2>&1 || rc=$?
	echo "$(($(date +%s) - build_start))" >"$tmp/build.seconds"
	exit "$rc"
) &
build_pid=$!

phase "kind cluster (make docker-build in parallel)"
if cluster_exists; then
	bold "Reusing the kind cluster $CLUSTER"
	"$KIND" export kubeconfig --name "$CLUSTER" >/dev/null 2>&1
else
	bold "Creating the kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
	"$KIND" create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 3m
fi

# Load what the cluster cannot pull: our images, and whatever of cert-manager's and the
# examples' images the local Docker has (the offline kit builds them; with internet the
# node pulls them if they are not here).
images=()
cm_images="${CERT_MANAGER_IMAGES:-}"
if [ -z "$cm_images" ] && [ -f "$CERT_MANAGER_MANIFEST" ] && [ -f "$(dirname "$CERT_MANAGER_MANIFEST")/images.txt" ]; then
	cm_images="$(cat "$(dirname "$CERT_MANAGER_MANIFEST")/images.txt")"
fi
for img in $cm_images busybox:1.28 nginx:1.27; do
	if docker image inspect "$img" >/dev/null 2>&1; then images+=("$img"); fi
done
phase "kind load (cert-manager, examples)"
if [ ${#images[@]} -gt 0 ]; then
	bold "Loading ${#images[@]} images into the cluster"
	"$KIND" load docker-image --name "$CLUSTER" "${images[@]}" >"$tmp/load.log" 2>&1 ||
		{ cat "$tmp/load.log"; die "kind load failed"; }
	say "${images[*]}"
fi

phase "cert-manager install"
bold "Installing cert-manager ($CERT_MANAGER_MANIFEST)"
k apply --server-side --force-conflicts -f "$CERT_MANAGER_MANIFEST" >"$tmp/cert-manager.log" ||
	{ cat "$tmp/cert-manager.log"; die "cannot apply cert-manager"; }
k -n cert-manager wait --for=condition=Available --timeout=5m \
	deployment/cert-manager deployment/cert-manager-cainjector deployment/cert-manager-webhook

phase "wait for make docker-build, kind load"
wait "$build_pid" || { tail -n 40 "$tmp/build.log"; die "make docker-build failed"; }
say "make docker-build took $(cat "$tmp/build.seconds") s (while the cluster was created)"
"$KIND" load docker-image --name "$CLUSTER" "$IMG" "$WAIT_IMG" "$READINESS_IMG" >"$tmp/load.log" 2>&1 ||
	{ cat "$tmp/load.log"; die "kind load failed"; }
say "$IMG $WAIT_IMG $READINESS_IMG"

phase "depends-on install (until it injects)"
bold "Installing depends-on (deploy/cert-manager, images $IMG and $WAIT_IMG)"
go run ./deploy/render --image "$IMG" --image "depends-on/readiness=$READINESS_IMG" --wait-image "$WAIT_IMG" deploy/cert-manager >"$tmp/depends-on.yaml"
existed=false
k -n depends-on-system get deployment/depends-on-webhook >/dev/null 2>&1 && existed=true
# cert-manager's webhook may need a few more seconds before it admits Issuers and Certificates.
for i in $(seq 60); do
	if k apply -f "$tmp/depends-on.yaml" >"$tmp/apply.log" 2>&1; then break; fi
	[ "$i" -lt 60 ] || { cat "$tmp/apply.log"; die "cannot apply depends-on"; }
	sleep 3
done
sed 's/^/    /' "$tmp/apply.log"
# A rebuilt image under the same tag needs new Pods.
if $existed; then k -n depends-on-system rollout restart deployment/depends-on-webhook >/dev/null; fi
k -n depends-on-system wait --for=condition=Ready --timeout=3m certificate/depends-on-webhook-serving
k -n depends-on-system rollout status deployment/depends-on-webhook --timeout=5m
k -n depends-on-system rollout status deployment/depends-on-readiness --timeout=5m
for i in $(seq 60); do
	[ -z "$(k get mutatingwebhookconfiguration depends-on -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ] || break
	[ "$i" -lt 60 ] || die "cert-manager did not inject the caBundle"
	sleep 2
done
# The Service may route a moment after the rollout: wait until a dry-run Pod comes back injected.
for i in $(seq 60); do
	if k -n "$NS" run depends-on-probe --image=busybox:1.28 --restart=Never --dry-run=server -o jsonpath='{.spec.initContainers[0].name}' \
		--annotations=depends-on.dev/services=kubernetes.default -- true 2>/dev/null | grep -qx wait-for-service; then
		break
	fi
	[ "$i" -lt 60 ] || die "the webhook does not inject (see: kubectl -n depends-on-system logs deploy/depends-on-webhook)"
	sleep 2
done
show -n depends-on-system get deployment,pods

phase "the two examples"
bold "Example 1: myapp-pod waits for the Services myservice and mydb (examples/myapp-pod.yaml)"
# Start from scratch on a reused cluster.
k -n "$NS" delete -f examples/myapp-pod.yaml -f examples/services.yaml -f examples/init-demo.yaml -f examples/info-page.yaml \
	--ignore-not-found --wait --grace-period=1 >/dev/null 2>&1 || true
grep -A2 'annotations:' examples/myapp-pod.yaml | sed 's/^/    /'
show -n "$NS" apply -f examples/myapp-pod.yaml

bold "Example 2: init-demo fetches its index.html from the info-page Service (examples/init-demo.yaml)"
grep -A4 'annotations:' examples/init-demo.yaml | sed 's/^/    /'
show -n "$NS" apply -f examples/init-demo.yaml

bold "The webhook injected one init container each"
printf '$ kubectl get pods myapp-pod init-demo -o go-template=...  # name, image, args of each init container\n'
k -n "$NS" get pod myapp-pod init-demo -o go-template='{{range .items}}{{.metadata.name}}:{{range .spec.initContainers}}
  {{.name}} {{.image}}{{range .args}} {{.}}{{end}}{{end}}
{{end}}'

bold "No Service yet: both Pods wait in Init"
for pod in myapp-pod init-demo; do
	k -n "$NS" wait --for=jsonpath='{.status.initContainerStatuses[0].state.running.startedAt}' --timeout=3m "pod/$pod" >/dev/null
done
sleep 3
show -n "$NS" get pods myapp-pod init-demo
show -n "$NS" logs myapp-pod -c wait-for-service
show -n "$NS" logs init-demo -c wait-for-service

bold "Creating the Services (examples/services.yaml) and the page server (examples/info-page.yaml)"
show -n "$NS" apply -f examples/services.yaml -f examples/info-page.yaml
k -n "$NS" wait --for=condition=Ready --timeout=3m pod/myapp-pod pod/init-demo >/dev/null

bold "Both Pods run"
show -n "$NS" get pods
show -n "$NS" logs myapp-pod -c wait-for-service
show -n "$NS" logs myapp-pod

bold "nginx serves the fetched page"
show -n "$NS" logs init-demo -c fetch
show -n "$NS" exec init-demo -c nginx -- cat /usr/share/nginx/html/index.html
printf '$ kubectl get --raw /api/v1/namespaces/%s/pods/init-demo:80/proxy/   # nginx on port 80\n' "$NS"
k get --raw "/api/v1/namespaces/$NS/pods/init-demo:80/proxy/"

phase ""
bold "Done in $((SECONDS - T0)) s"
printf '    %s\n' "${phases[@]}"
say "$(printf '%-44s %4d s' "(make docker-build, in the background)" "$(cat "$tmp/build.seconds")")"
say "kubectl context: kind-$CLUSTER (kubectl --context kind-$CLUSTER get pods)"
say "try: kubectl --context kind-$CLUSTER -n $NS describe pod myapp-pod"
say "clean up: make demo-clean"
