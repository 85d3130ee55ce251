#!/usr/bin/env bash
# Recreates fixtures/mlflow/store-mlflow-2.9.2.db: a SQLite tracking store written by MLflow
# 2.9.2 (schema revision acf3f17fdcc7), for the `mlflow db upgrade` test. Not run by CI (the
# file is committed); run it only to refresh the fixture. Uses a throw-away venv in a temp dir.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/fixtures/mlflow/store-mlflow-2.9.2.db"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "mlflow-skinny==2.9.2" "sqlalchemy<2.1" "alembic<1.14"
"$work/venv/bin/python" - "$work/mlflow.db" <<'PY'
import sys, mlflow
mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
exp = mlflow.create_experiment("iris-before-upgrade", artifact_location="file:///tmp/mlflow-artifacts")
with mlflow.start_run(experiment_id=exp, run_name="baseline"):
    mlflow.log_param("model", "sklearn-iris")
    mlflow.log_metric("accuracy", 0.96)
PY
mkdir -p "$(dirname "$out")"
mv "$work/mlflow.db" "$out"
echo "wrote $out"
