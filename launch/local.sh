#!/usr/bin/env bash
# One training process on this machine; JAX uses every local device (CPU, GPUs or TPU chips).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}

usage() {
  cat <<USAGE
Usage: launch/local.sh [--devices N] [--dry-run] --config CONFIG --workdir DIR [OVERRIDES...]

Runs, with the project's venv (created by 'make venv' if it is missing):
  $VENV/bin/python -m bf_jax.main --config CONFIG --workdir DIR OVERRIDES...

  --config CONFIG  config file and its args, e.g. configs/digits_lt.py:bf=off
  --workdir DIR    checkpoints and logs; the same DIR again resumes the run
  --devices N      force N CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N and
                   JAX_PLATFORMS=cpu), to try data-parallel sharding without accelerators
  --dry-run        print the commands, one per line, instead of running them
  -h, --help       show this text
  OVERRIDES        passed to bf_jax.main verbatim, e.g. --config.batch_size=128

Relative paths are relative to the current directory. Environment: VENV (default $ROOT/.venv).

Example:
  launch/local.sh --devices 8 --config configs/digits_lt.py:smoke --workdir /tmp/bf_smoke
USAGE
}

die() { echo "local.sh: error: $*" >&2; exit 2; }

# shellcheck source=launch/quote.sh
source "$ROOT/launch/quote.sh"

config="" workdir="" devices="" dry_run=0
extra=()
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --devices) (($# > 1)) || die "--devices needs a value"; devices=$2; shift ;;
    --devices=*) devices=${1#*=} ;;
    --config) (($# > 1)) || die "--config needs a value"; config=$2; shift ;;
    --config=*) config=${1#*=} ;;
    --workdir) (($# > 1)) || die "--workdir needs a value"; workdir=$2; shift ;;
    --workdir=*) workdir=${1#*=} ;;
    --) shift; extra+=("$@"); break ;;
    *) extra+=("$1") ;;  # --config.* overrides and any other bf_jax.main flag
  esac
  shift
done

[[ -n $config ]] || die "missing --config (e.g. --config configs/digits_lt.py); see --help"
[[ -n $workdir ]] || die "missing --workdir (e.g. --workdir runs/digits); see --help"
if [[ -n $devices && ! $devices =~ ^[1-9][0-9]*$ ]]; then
  die "--devices must be a positive integer, got '$devices'"
fi

py=$VENV/bin/python
cmd=()
if [[ -n $devices ]]; then
  # Keep the caller's other XLA flags; a device count already there would fight ours.
  read -ra old_flags <<<"${XLA_FLAGS:-}"
  flags=()
  for f in "${old_flags[@]}"; do
    [[ $f == --xla_force_host_platform_device_count=* ]] || flags+=("$f")
  done
  flags+=("--xla_force_host_platform_device_count=$devices")
  # The forced devices are CPU devices; on a GPU machine JAX would otherwise pick the GPUs.
  cmd=(env "XLA_FLAGS=${flags[*]}" JAX_PLATFORMS=cpu)
fi
cmd+=("$py" -m bf_jax.main --config "$config" --workdir "$workdir" "${extra[@]}")

if [[ ! -x $py ]]; then
  # The Makefile finds Python 3.12 and installs this package (editable) with its train and test extras.
  if ((dry_run)); then show make -C "$ROOT" venv "VENV=$VENV"; else make -C "$ROOT" venv "VENV=$VENV"; fi
fi
if ((dry_run)); then
  show "${cmd[@]}"
  exit 0
fi
exec "${cmd[@]}"
