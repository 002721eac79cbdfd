#!/usr/bin/env bash
# Train on one machine (CPU or GPUs): python -m mim_jax.train with a workdir; rerun to resume.
#
#   launch/local.sh [--workdir DIR] [--python PY] [--max-steps N] [--dry-run] \
#       CONFIG [--config.field=value ...]
#
#   WORKDIR=/tmp/mim_demo launch/local.sh configs/demo.py:mask=red --config.total_steps=100
#
# CONFIG is configs/file.py[:key=value,...]. The workdir comes from --workdir, else $WORKDIR,
# else runs/<config name>. Rerunning the same command resumes from the last checkpoint in it
# (an interrupted or preempted run loses at most checkpoint_every steps). On a GPU machine JAX
# uses every visible GPU (set CUDA_VISIBLE_DEVICES to choose) in one process; the mesh is
# config.mesh (data=-1: plain data parallel). --dry-run prints the command instead of running it.
# Extra flags after CONFIG (--config.* overrides, --max-steps, --distributed ...) go to the CLI.
set -euo pipefail

usage() {  # the comment block at the top of this file, without its '#'
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  exit "${1:-0}"
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
workdir="${WORKDIR:-}"
python="${PYTHON:-}"
dry_run=0
config=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --workdir=*) workdir="${1#*=}"; shift ;;
    --python) python="$2"; shift 2 ;;
    --python=*) python="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --config=*) config="${1#*=}"; shift ;;
    --config) config="$2"; shift 2 ;;
    -*) extra+=("$1"); shift ;;
    *)
      if [[ -z "$config" ]]; then config="$1"; else extra+=("$1"); fi
      shift ;;
  esac
done
if [[ -z "$config" ]]; then
  echo "error: no CONFIG given (e.g. launch/local.sh configs/demo.py)" >&2
  usage 2
fi
if [[ -z "$workdir" ]]; then
  name="$(basename "${config%%:*}")"
  workdir="runs/${name%.py}"
fi
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

cmd=("$python" -m mim_jax.train --config "$config" --workdir "$workdir" ${extra[@]+"${extra[@]}"})
if [[ "$dry_run" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
mkdir -p "$workdir"
echo "[local.sh] $(printf '%q ' "${cmd[@]}")" >&2
exec "${cmd[@]}"
