# shellcheck shell=bash
# Sourced (bash) by `make e2e` and test/demo.sh: the tools and upstream sources of
# the kind tier, each overridable from the environment.
#
#   KIND                   kind v0.30.0: `kind` in PATH if it is that version, else
#                          ./bin/kind (go install sigs.k8s.io/kind@v0.30.0 on first use)
#   KUBECTL                $KUBEBUILDER_ASSETS/kubectl if there (the envtest assets' version,
#                          e.g. the offline kit's), else `kubectl` in PATH
#   KIND_NODE_IMAGE        kindest/node:v1.34.0 (kind v0.30.0's default; its built-in
#                          default is pinned by digest, so it is always passed explicitly)
#   CERT_MANAGER_MANIFEST  the static install manifest of cert-manager $CERT_MANAGER_VERSION
#   CERT_MANAGER_IMAGES    images to `kind load` before installing cert-manager (default:
#                          images.txt next to a local CERT_MANAGER_MANIFEST, if any)
#
# Offline machines: when neither KIND_NODE_IMAGE nor CERT_MANAGER_MANIFEST is set and
# the offline kit exists at $OFFLINE_KIT (default ../shared/offline next to the
# repository), its all.sh is evaluated first (KUBEBUILDER_ASSETS, KIND_NODE_IMAGE,
# CERT_MANAGER_MANIFEST, DOCKER_BUILD_FLAGS) and KIND defaults to its kind.sh. Set
# OFFLINE_KIT= (empty) to never use it. With internet nothing of that is needed.

_kind_env_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND_VERSION="${KIND_VERSION:-v0.30.0}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"

if [ -z "${KIND_NODE_IMAGE:-}" ] && [ -z "${CERT_MANAGER_MANIFEST:-}" ]; then
	_kit="${OFFLINE_KIT-$_kind_env_root/../shared/offline}"
	if [ -n "$_kit" ] && [ -x "$_kit/all.sh" ]; then
		echo "kind-env: using the offline kit in $_kit (OFFLINE_KIT= to disable)" >&2
		_kit_env="$("$_kit/all.sh")" || { echo "kind-env: $_kit/all.sh failed" >&2; return 1 2>/dev/null || exit 1; }
		eval "$_kit_env"
		if [ -z "${KIND:-}" ] && [ -x "$_kit/kind.sh" ]; then
			KIND="$("$_kit/kind.sh")"
		fi
		unset _kit_env
	fi
	unset _kit
fi

KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.34.0}"
CERT_MANAGER_MANIFEST="${CERT_MANAGER_MANIFEST:-https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml}"

if [ -z "${KIND:-}" ]; then
	if command -v kind >/dev/null 2>&1 && [ "$(kind version 2>/dev/null | awk '{print $2}')" = "$KIND_VERSION" ]; then
		KIND=kind
	else
		KIND="$_kind_env_root/bin/kind"
		if ! [ -x "$KIND" ] || [ "$("$KIND" version 2>/dev/null | awk '{print $2}')" != "$KIND_VERSION" ]; then
			echo "kind-env: go install sigs.k8s.io/kind@$KIND_VERSION into $_kind_env_root/bin" >&2
			GOBIN="$_kind_env_root/bin" go install "sigs.k8s.io/kind@$KIND_VERSION" ||
				{ echo "kind-env: cannot install kind" >&2; return 1 2>/dev/null || exit 1; }
		fi
	fi
fi

if [ -z "${KUBECTL:-}" ]; then
	if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kubectl" ]; then
		KUBECTL="$KUBEBUILDER_ASSETS/kubectl"
	elif command -v kubectl >/dev/null 2>&1; then
		KUBECTL=kubectl
	else
		echo "kind-env: kubectl not found (set KUBECTL, or KUBEBUILDER_ASSETS to a directory holding it)" >&2
		return 1 2>/dev/null || exit 1
	fi
fi

export KIND KUBECTL KIND_NODE_IMAGE CERT_MANAGER_MANIFEST KIND_VERSION CERT_MANAGER_VERSION
unset _kind_env_root
