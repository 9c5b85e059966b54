#!/usr/bin/env bash
# Submit the same DVC run as a Ray job to a cluster whose dashboard is at $RAY_ADDRESS
# (default http://127.0.0.1:8265). The job runs `dvc repro` on the head node with this checkout
# as its working directory; the train stage joins the cluster because ray.address is "auto".
#   cluster/submit.sh                       # the default DAG
#   cluster/submit.sh -S train.steps=6000   # any `dvc exp run -S` overrides
set -euo pipefail
cd "$(dirname "$0")/.."
ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
exec ray job submit --address "$ADDRESS" --working-dir . \
  --runtime-env-json '{"excludes": [".venv", ".git", "runs", ".dvc/cache", ".dvc/tmp"]}' \
  -- dvc exp run -S ray.address=auto "$@"
