#!/usr/bin/env bash
# Installs the AWS side the tests run, idempotently:
#   .tools/venv-aws   a Python venv with the real AWS CLI (PyPI `awscli`) and moto's server
#                     (PyPI `moto[server]`, started by tests on a loopback port for S3, RDS,
#                     IAM, Route 53, ELBv2), pinned below
#   .tools/bin/aws, .tools/bin/moto_server   links into it
# The EKS operations moto lacks (insights, version rollback, add-on updates) are served by
# kube-sim's simulated EKS endpoint (`aws --endpoint-url <kube-sim>/eks`).
# Called by scripts/install-tools.sh. A second run with the same pins only checks a stamp.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${UPGRADE_TOOLS_DIR:-$root/.tools}"
mkdir -p "$tools/bin"
tools="$(cd "$tools" && pwd -P)"
venv="$tools/venv-aws"

AWSCLI_VERSION="1.46.3"
MOTO_VERSION="5.2.5"
pins="awscli==$AWSCLI_VERSION moto[server]==$MOTO_VERSION"
stamp="$venv/.stamp"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$pins" && -x "$venv/bin/aws" &&
      "$(head -n1 "$venv/bin/aws")" == "#!$venv/bin/python"* ]]; then
  echo "aws tools: venv up to date in $venv"
else
  command -v python3 >/dev/null 2>&1 || { echo "install-aws-tools: python3 (3.10+) is required" >&2; exit 2; }
  echo "aws tools: creating $venv ($pins)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    "awscli==$AWSCLI_VERSION" "moto[server]==$MOTO_VERSION"
  echo "$pins" > "$stamp"
  echo "aws tools: installed into $venv"
fi
ln -sf "$venv/bin/aws" "$tools/bin/aws"
ln -sf "$venv/bin/moto_server" "$tools/bin/moto_server"
"$tools/bin/aws" --version
