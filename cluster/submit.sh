#!/usr/bin/env bash
# Run the DVC DAG on a Ray cluster as a job whose result comes back as a DVC experiment.
#   cluster/submit.sh [--name EXP] [--no-wait] [--git-remote origin] [--dvc-remote NAME] [--job-dir DIR] [-S key=value ...]
# The dashboard is at $RAY_ADDRESS (default http://127.0.0.1:8265). The committed HEAD goes to the git remote
# (as refs/gan-jobs/EXP) and its DVC-tracked data to the DVC remote (`dvc push`); both must be reachable from
# the cluster too. The job (cluster/job.sh) checks out that commit, `dvc pull`s, runs
# `dvc exp run --name EXP -S ...` (the Ray stages join the job's cluster) and, only if it succeeds, `dvc exp push`es EXP.
# Then, here: dvc exp pull <git-remote> EXP; dvc exp show; dvc metrics diff; dvc exp apply EXP.
# --job-dir: where the job checks the commit out on the head, as DIR/EXP (default /tmp/gan-jobs). Ray workers
# import the code and read the prepared data there, so on nodes that share no disk it must be a shared
# filesystem mounted at the same path on every node (NFS, EFS, Filestore).
set -euo pipefail
cd "$(dirname "$0")/.."
address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
exp="job-$(date -u +%Y%m%d-%H%M%S)"
git_remote=origin dvc_remote="" wait=true job_dir=/tmp/gan-jobs
job_args=()
die() { echo "submit.sh: $*" >&2; exit 1; }
# The job's status from the dashboard's REST API (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED); empty if none.
job_status() {
  curl -sf --max-time 10 "$address/api/jobs/$exp" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("status", ""))' 2>/dev/null || true
}
while (($#)); do
  case "$1" in
    --name) exp="$2"; shift 2 ;;
    --no-wait) wait=false; shift ;;
    --git-remote) git_remote="$2"; shift 2 ;;
    --dvc-remote) dvc_remote="$2"; shift 2 ;;
    --job-dir) job_dir="$2"; shift 2 ;;
    -S) job_args+=(-S "$2"); shift 2 ;;
    *) die "unknown argument '$1' (usage: see the top of cluster/submit.sh)" ;;
  esac
done

# The job runs what is committed: anything else would silently not be part of the experiment.
[[ -z "$(git status --porcelain)" ]] ||
  die "the working tree has uncommitted changes ($(git status --porcelain | head -3 | tr '\n' ' ')); commit them (the job runs the committed HEAD) and submit again."
git_url="$(git remote get-url "$git_remote" 2>/dev/null)" ||
  die "no git remote '$git_remote' is configured; add one the cluster can reach too: git remote add $git_remote URL (or pass --git-remote NAME)."
dvc_remote="${dvc_remote:-$(dvc config core.remote 2>/dev/null || true)}"
[[ -n "$dvc_remote" ]] ||
  die "no DVC remote is configured; add one the cluster can reach too: dvc remote add -d NAME URL (or pass --dvc-remote NAME)."
dvc_url="$(dvc remote list | awk -v name="$dvc_remote" '$1 == name {print $2}')"
[[ -n "$dvc_url" ]] || die "there is no DVC remote named '$dvc_remote' (dvc remote list shows the configured ones)."
case "$dvc_url" in *://* | /*) ;; *) dvc_url="$(cd .dvc && pwd)/$dvc_url" ;; esac  # a relative path is relative to .dvc/
curl -sf --max-time 10 "$address/api/version" >/dev/null ||
  die "no Ray dashboard answers at $address; start the cluster (or forward its dashboard: ray dashboard cluster/cluster.yaml) or set RAY_ADDRESS."
! git ls-remote --exit-code "$git_remote" "refs/gan-jobs/$exp" >/dev/null ||
  die "a job named '$exp' was already submitted to $git_remote; choose another --name."

[[ "$job_dir" == /* ]] || die "--job-dir must be an absolute path (every node resolves it the same way), not '$job_dir'."

commit="$(git rev-parse HEAD)"
dvc push -r "$dvc_remote"  # data first: a failed push leaves no job ref behind
git push -q "$git_remote" "HEAD:refs/gan-jobs/$exp"
echo "submit.sh: job $exp runs commit $commit; when it has succeeded, fetch the result with: dvc exp pull $git_remote $exp"
checkout="$job_dir/$exp"
# Ray workers (Train, Tune trials) import gans/ and pipeline/ from the checkout, not from a node's install.
runtime_env="$(python3 -c 'import json, sys; print(json.dumps({"env_vars": {"PYTHONPATH": sys.argv[1]}}))' "$checkout")"
submit=(ray job submit --address "$address" --submission-id "$exp" --working-dir cluster --runtime-env-json "$runtime_env")
$wait || submit+=(--no-wait)
submit+=(-- bash job.sh --git-url "$git_url" --git-ref "refs/gan-jobs/$exp" --commit "$commit"
  --dvc-remote "$dvc_remote" --dvc-url "$dvc_url" --name "$exp" --checkout "$checkout" ${job_args[@]+"${job_args[@]}"})
# A head node that has just started answers "No available agent to submit job" until its job agent is up:
# submit again for up to a minute while that is the answer and no job under this id exists.
submitted() {
  local attempt output
  for attempt in $(seq 30); do
    output="$(mktemp)"
    if "${submit[@]}" > >(tee "$output") 2> >(tee -a "$output" >&2); then rm -f "$output"; return 0; fi
    sleep 0.2  # let tee finish writing
    if ! grep -q "No available agent to submit job" "$output" || [[ -n "$(job_status)" ]]; then
      rm -f "$output"
      return 1
    fi
    rm -f "$output"
    echo "submit.sh: the head's job agent is not up yet; submitting again in 2 s ($attempt/30)" >&2
    sleep 2
  done
  return 1
}
if ! submitted; then
  # Not submitted at all (no job under that id): free the name again.
  [[ -n "$(job_status)" ]] || git push -q -d "$git_remote" "refs/gan-jobs/$exp" || true
  die "job $exp did not succeed and pushed nothing; see why with: ray job logs --address $address $exp"
fi
# `ray job submit` exits 0 for a job that was stopped (STOPPED): only SUCCEEDED has pushed an experiment.
if $wait && [[ "$(job_status)" != SUCCEEDED ]]; then
  die "job $exp ended $(job_status) and pushed nothing; see: ray job logs --address $address $exp"
fi
if $wait; then
  echo "submit.sh: job $exp SUCCEEDED; fetch it: dvc exp pull $git_remote $exp, then dvc exp show / dvc metrics diff / dvc exp apply $exp"
else
  echo "submit.sh: follow it with: ray job status --address $address $exp (or ray job logs --address $address -f $exp); when it has succeeded: dvc exp pull $git_remote $exp"
fi
