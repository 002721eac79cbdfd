#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (single host or pod slice): create or reuse the slice, install
# mim_jax on every worker, run the same training command on all workers, stream the logs.
#
#   launch/tpu_pod.sh --name mae-v4 --zone us-central2-b --accelerator-type v4-32 \
#       --runtime-version tpu-ubuntu2204-base --workdir /home/$USER/gcs/runs/mae_b \
#       CONFIG [--config.field=value ...]
#
# Options:
#   --name NAME  --zone ZONE  --project PROJECT      the slice (gcloud compute tpus tpu-vm)
#   --accelerator-type TYPE (v4-8)  --runtime-version VERSION (tpu-ubuntu2204-base)
#   --spot | --preemptible   create a spot / preemptible slice
#   --install SPEC   pip-install SPEC on every worker (e.g. a git URL or a wheel on gs://)
#                    instead of copying this checkout there (the default)
#   --mount-bucket BUCKET   mount gs://BUCKET with gcsfuse at ~/gcs on every worker (gcsfuse
#                    must be on the image, e.g. via --setup) so that --workdir ~/gcs/... is shared
#   --setup CMD      shell line run on every worker before installing
#   --workdir DIR    checkpoints + metrics: a path every worker sees (see PREEMPTION below)
#   --job-name NAME  log file name on the workers (~/NAME.log)
#   --detach         start training in the background on the workers and return; stream with
#                    gcloud ... ssh --worker=0 --command 'tail -f ~/NAME.log'
#   --dry-run        print every command instead of running it (needs no gcloud)
#
# PREEMPTION / RESUME: spot and preemptible slices can disappear at any time. Rerunning this same
# command recreates the slice if it is gone (or deletes and recreates one left PREEMPTED),
# reinstalls and resumes training from the last checkpoint in --workdir. That only works when
# the workdir outlives the VMs and all workers share it: a bucket URL (--workdir gs://BUCKET/PATH;
# the workers then also install gcsfs), a GCS bucket mounted on every worker (--mount-bucket) or
# a shared filesystem.
# Keep retrying after a preemption with:  until launch/tpu_pod.sh ...; do sleep 120; done
set -euo pipefail

usage() {  # the comment block at the top of this file, without its '#'
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  exit "${1:-0}"
}

name=""; zone=""; project=""; accel="v4-8"; runtime="tpu-ubuntu2204-base"; capacity=""
install=""; bucket=""; setup=""; workdir="${WORKDIR:-}"; job_name=""; detach=0; dry_run=0
config=""; extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --accelerator-type) accel="$2"; shift 2 ;;
    --runtime-version|--version) runtime="$2"; shift 2 ;;
    --spot) capacity="--spot"; shift ;;
    --preemptible) capacity="--preemptible"; shift ;;
    --install) install="$2"; shift 2 ;;
    --mount-bucket) bucket="${2#gs://}"; shift 2 ;;
    --setup) setup="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --job-name) job_name="$2"; shift 2 ;;
    --detach) detach=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --config) config="$2"; shift 2 ;;
    --config=*) config="${1#*=}"; shift ;;
    -*) extra+=("$1"); shift ;;
    *) if [[ -z "$config" ]]; then config="$1"; else extra+=("$1"); fi; shift ;;
  esac
done
die() { echo "error: $*" >&2; exit 2; }
[[ -n "$name" ]] || die "--name NAME is required (the TPU VM slice to create or reuse)"
[[ -n "$zone" ]] || die "--zone ZONE is required (e.g. us-central2-b)"
[[ -n "$config" ]] || die "no CONFIG given (e.g. configs/mae_in1k.py:model=vit_large)"
[[ -n "$workdir" ]] || die "--workdir DIR is required (shared by all workers; see --help)"
cloud_deps=""  # a bucket URL workdir: mim_jax writes it through fsspec, gcsfs for gs://
if [[ "$workdir" == gs://* ]]; then cloud_deps=" gcsfs"; fi
if [[ -z "$job_name" ]]; then
  job_name="$(basename "${config%%:*}")"; job_name="mim_${job_name%.py}"
fi

gc=(gcloud compute tpus tpu-vm)
where=(--zone "$zone")
if [[ -n "$project" ]]; then where+=(--project "$project"); fi
q() {  # shell-quotes each argument readably (single quotes where needed), space-separated
  local a
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,+@%-][A-Za-z0-9_./:=,+@%~-]*$ ]]; then printf '%s ' "$a"
    else printf "'%s' " "${a//\'/\'\\\'\'}"; fi
  done
}
# The workdir as the remote shell should see it: ~/x becomes "$HOME/x" (expanded there).
remote_path() {
  if [[ "$1" == "~/"* ]]; then printf '"$HOME/%s"' "${1#\~/}"; else q "$1"; fi
}

# Remote commands (run on every worker with --worker=all).
remote_setup="set -e"
if [[ -n "$setup" ]]; then remote_setup+="; $setup"; fi
if [[ -n "$bucket" ]]; then
  remote_setup+="; mkdir -p ~/gcs && (mountpoint -q ~/gcs || gcsfuse --implicit-dirs --rename-dir-limit=1000000 $bucket ~/gcs)"
fi
if [[ -n "$install" ]]; then
  remote_install="$remote_setup; pip install -U 'jax[tpu]'$cloud_deps $(q "$install")"
  code_dir="~"
else
  remote_install="$remote_setup; mkdir -p ~/mim_jax && tar xzf ~/mim_jax.tar.gz -C ~/mim_jax \
&& pip install -U 'jax[tpu]'$cloud_deps -e ~/mim_jax"
  code_dir="~/mim_jax"
fi
train="cd $code_dir && python3 -m mim_jax.train --config $(q "$config")--workdir $(remote_path "$workdir")\
 --distributed jax $(q "${extra[@]+"${extra[@]}"}")"
train="${train% }"
log="~/$job_name.log"
if [[ "$detach" == 1 ]]; then
  remote_train="nohup bash -c $(q "$train >> $log 2>&1") > /dev/null 2>&1 &"
else
  remote_train="$train 2>&1 | tee -a $log"
fi

run() {  # prints the command (dry run) or runs it
  if [[ "$dry_run" == 1 ]]; then local line; line="$(q "$@")"; echo "${line% }"; else "$@"; fi
}
note() {  # a comment: on stdout in a dry run (a readable script), else on stderr
  if [[ "$dry_run" == 1 ]]; then echo "# $*"; else echo "# $*" >&2; fi
}
step() { note "$@"; }

if [[ "$dry_run" == 1 ]]; then
  echo "# 1. create the slice unless it exists (delete it first if it was preempted):"
  echo "state=\$($(q "${gc[@]}" describe "$name" "${where[@]}" --format='value(state)')2>/dev/null || true)"
  echo "if [[ \"\$state\" == PREEMPTED || \"\$state\" == TERMINATED ]]; then $(q "${gc[@]}" delete "$name" "${where[@]}" --quiet); fi"
  echo "if [[ -z \"\$state\" || \"\$state\" == PREEMPTED || \"\$state\" == TERMINATED ]]; then"
  echo "  $(q "${gc[@]}" create "$name" "${where[@]}" --accelerator-type "$accel" --version "$runtime" ${capacity:+"$capacity"})"
  echo "fi"
else
  command -v gcloud >/dev/null || die "gcloud not found (install the Google Cloud SDK, or use --dry-run)"
  step "1. slice $name in $zone"
  state="$("${gc[@]}" describe "$name" "${where[@]}" --format='value(state)' 2>/dev/null || true)"
  if [[ "$state" == PREEMPTED || "$state" == TERMINATED ]]; then
    step "slice is $state: deleting it to recreate"
    "${gc[@]}" delete "$name" "${where[@]}" --quiet
    state=""
  fi
  if [[ -z "$state" ]]; then
    "${gc[@]}" create "$name" "${where[@]}" --accelerator-type "$accel" --version "$runtime" \
      ${capacity:+"$capacity"}
  else
    step "reusing slice $name (state $state)"
  fi
fi

if [[ -z "$install" ]]; then
  note "2. copy this checkout to every worker:"
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  tarball="${TMPDIR:-/tmp}/mim_jax.tar.gz"
  run tar czf "$tarball" -C "$here" --exclude=.venv --exclude=.git --exclude=runs --exclude=out \
    --exclude='*.egg-info' --exclude=__pycache__ .
  run "${gc[@]}" scp "$tarball" "$name:~/mim_jax.tar.gz" "${where[@]}" --worker=all
fi
note "3. install on every worker:"
run "${gc[@]}" ssh "$name" "${where[@]}" --worker=all --command "$remote_install"
note "4. train on every worker (same command; JAX finds the other workers):"
run "${gc[@]}" ssh "$name" "${where[@]}" --worker=all --command "$remote_train"
if [[ "$detach" == 1 ]]; then
  note "stream the logs of worker 0:"
  echo "$(q "${gc[@]}" ssh "$name" "${where[@]}" --worker=0 --command "tail -f $log")"
fi
