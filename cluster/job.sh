#!/usr/bin/env bash
# The cluster side of cluster/submit.sh: the Ray job's entrypoint, run on the head node.
# It checks out the submitted commit from the git remote, pulls its DVC data from the DVC remote, runs the
# DAG as a DVC experiment whose Ray stages join this cluster, and pushes the experiment back (git refs to
# the git remote, outputs to the DVC remote). `set -e`: a failed stage ends the job FAILED before any push.
#   job.sh --git-url URL --git-ref REF --commit SHA --dvc-remote NAME --dvc-url URL --name EXP --checkout DIR
#          [-S key=value ...]
# DIR is where the commit is checked out; the job's runtime env puts it on every Ray worker's PYTHONPATH
# (submit.sh), so workers run the submitted code, not whatever version a node has installed.
set -euo pipefail
overrides=()  # ray.address: null joins the cluster this job runs on (RAY_ADDRESS, set by Ray)
while (($#)); do
  case "$1" in
    --git-url) git_url="$2" ;;
    --git-ref) git_ref="$2" ;;
    --commit) commit="$2" ;;
    --dvc-remote) dvc_remote="$2" ;;
    --dvc-url) dvc_url="$2" ;;
    --name) exp="$2" ;;
    --checkout) checkout="$2" ;;
    -S) overrides+=(-S "$2") ;;
    *) echo "job.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift 2
done

echo "[job] $exp: commit $commit from $git_url into $checkout"
rm -rf "$checkout" && mkdir -p "$checkout" && cd "$checkout"
git init -q && git remote add origin "$git_url"
git fetch -q origin "$git_ref"
git checkout -q --detach FETCH_HEAD
if [[ "$(git rev-parse HEAD)" != "$commit" ]]; then
  echo "[job] $git_ref on $git_url is $(git rev-parse HEAD), not the submitted $commit: was it pushed over?" >&2
  exit 1
fi
# DVC commits the experiment: it needs an identity, which a bare cluster node may lack.
git config user.name >/dev/null || git config user.name "gan-pipeline job"
git config user.email >/dev/null || git config user.email "gan-pipeline-job@localhost"

# --local: the remote's other settings (endpoint, profile) stay as .dvc/config has them; only the URL is set.
dvc remote add --local --force --default "$dvc_remote" "$dvc_url"
# Outputs the commit's dvc.lock records but nobody pushed are produced by the run itself.
dvc pull --allow-missing
dvc exp run --name "$exp" "${overrides[@]}"
dvc exp push origin "$exp"
echo "[job] pushed experiment $exp; fetch it with: dvc exp pull $git_url $exp"
cd / && rm -rf "$checkout"
