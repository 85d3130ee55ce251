#!/usr/bin/env bash
# Installs the real components the verification tests run (crates/verify), idempotently:
#   .tools/venv-verify   a Python venv with MLflow (tracking server, SQLite store, with
#                        prometheus-flask-exporter for its metrics), KServe (its ModelServer)
#                        and scikit-learn (the iris model), boto3 (MLflow's S3 client), pinned below
#   prometheus           from Debian (apt-get), only when no `prometheus` is on PATH
# Called by scripts/install-tools.sh. A second run with the same pins only checks a stamp.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${UPGRADE_TOOLS_DIR:-$root/.tools}"
mkdir -p "$tools"
# The physical path: a worktree whose .tools links to another checkout's shares its venv.
tools="$(cd "$tools" && pwd -P)"
venv="$tools/venv-verify"

MLFLOW_VERSION="3.17.2"
KSERVE_VERSION="0.21.0"
SKLEARN_VERSION="1.9.1"
# MLflow's `server --expose-prometheus` needs it; not a dependency of the mlflow package.
FLASK_EXPORTER_VERSION="0.23.2"
pins="mlflow==$MLFLOW_VERSION kserve==$KSERVE_VERSION scikit-learn==$SKLEARN_VERSION prometheus-flask-exporter==$FLASK_EXPORTER_VERSION"
stamp="$venv/.stamp"

# A venv only works where it was created (its scripts name their python by absolute path),
# so a moved or copied checkout gets a fresh one.
if [[ -f "$stamp" && "$(cat "$stamp")" == "$pins" && -x "$venv/bin/mlflow" &&
      "$(head -n1 "$venv/bin/mlflow")" == "#!$venv/bin/python"* ]]; then
  echo "verify tools: venv up to date in $venv"
else
  command -v python3 >/dev/null 2>&1 || { echo "install-verify-tools: python3 (3.10+) is required" >&2; exit 2; }
  echo "verify tools: creating $venv ($pins); takes a few minutes"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # One resolve for all three keeps their shared dependencies (fastapi, numpy, protobuf) consistent.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    "mlflow==$MLFLOW_VERSION" "kserve==$KSERVE_VERSION" "scikit-learn==$SKLEARN_VERSION" \
    "prometheus-flask-exporter==$FLASK_EXPORTER_VERSION"
  echo "$pins" > "$stamp"
  echo "verify tools: installed into $venv"
fi

# boto3: the S3 client MLflow's server uses for s3:// artifacts (an image that serves them
# carries it); the MLflow access check (upgrade-emergency check-mlflow) runs it in the
# tests. Added into the same venv without recreating it.
BOTO3_VERSION="1.44.8"
if ! "$venv/bin/python" -c "import boto3, sys; sys.exit(boto3.__version__ != '$BOTO3_VERSION')" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir "boto3==$BOTO3_VERSION"
  echo "verify tools: boto3 $BOTO3_VERSION installed into $venv"
fi

if command -v prometheus >/dev/null 2>&1; then
  echo "verify tools: prometheus found at $(command -v prometheus)"
else
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-verify-tools: prometheus is missing; install it as root: apt-get update && apt-get install -y --no-install-recommends prometheus" >&2
    exit 2
  fi
  echo "verify tools: installing prometheus from Debian"
  apt-get update -qq
  # The package's service is not started in containers; the tests run their own server.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  echo "verify tools: prometheus installed at $(command -v prometheus)"
fi
