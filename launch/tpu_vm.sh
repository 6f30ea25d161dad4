#!/usr/bin/env bash
# Cloud TPU VM (one host or a pod slice): create it, copy the code, install, train on every
# worker at once, delete it. jax.distributed.initialize() finds the pod's other hosts by itself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<'USAGE'
Usage: launch/tpu_vm.sh COMMAND [OPTIONS] [OVERRIDES...]

Commands:
  create  create the TPU VM (tpu-vm create; with --queued a queued resource, waited on until ACTIVE)
  setup   copy the committed code (git archive HEAD) to every worker and install it there
          (uv, Python 3.12, jax[tpu], pip install -e '.[train,gcs]')
  run     train on every worker: bf_jax.main --config CONFIG --workdir gs://BUCKET/RUN_DIR OVERRIDES...
  delete  delete the TPU VM (with --queued: the queued resource and its node)
  all     create, setup, run (and delete at the end with --delete)

Settings (flag, or environment variable):
  --project P            TPU_PROJECT           Google Cloud project (all commands)
  --zone Z               TPU_ZONE              zone, e.g. us-central2-b (all commands)
  --name N               TPU_NAME              TPU VM name; also the queued resource id (all)
  --accelerator-type T   TPU_ACCELERATOR_TYPE  e.g. v4-8, v5litepod-16 (create)
  --version V            TPU_VERSION           TPU runtime version, e.g. tpu-ubuntu2204-base (create)
  --bucket B             TPU_BUCKET            gs://B or B: the workdir's bucket (run)
  --config C             CONFIG                e.g. configs/cifar_lt.py:dataset=cifar100 (run)
  --run-dir D            RUN_DIR               path inside the bucket; default bf_jax/NAME.
                                               The workdir is gs://B/D; run again to resume.
Options:
  --queued     create through a queued resource (waits for capacity instead of failing)
  --spot       Spot TPU (cheaper, preemptible; rerun 'all' to resume from the bucket)
  --delete     with 'all': delete the TPU when the run ends, also when it fails
  --dry-run    print every command, one per line, shell-quoted; run nothing
  -h, --help   show this text
OVERRIDES (e.g. --config.batch_size=1024) go to bf_jax.main verbatim; '--' ends the options.

Example:
  launch/tpu_vm.sh all --project my-proj --zone us-central2-b --name bf-v4 \
    --accelerator-type v4-16 --version tpu-ubuntu2204-base --bucket my-bucket \
    --config configs/cifar_lt.py:dataset=cifar100 --config.batch_size=256 --delete
USAGE
}

die() { echo "tpu_vm.sh: error: $*" >&2; exit 2; }

# shellcheck source=launch/quote.sh
source "$ROOT/launch/quote.sh"

# Dry run: print the command. Otherwise echo it to stderr (so the log says what ran) and run it.
run() {
  if ((dry_run)); then
    show "$@"
  else
    printf '+ %s\n' "$(show "$@")" >&2
    "$@"
  fi
}

project=${TPU_PROJECT:-} zone=${TPU_ZONE:-} name=${TPU_NAME:-}
accel=${TPU_ACCELERATOR_TYPE:-} version=${TPU_VERSION:-} bucket=${TPU_BUCKET:-}
config=${CONFIG:-} run_dir=${RUN_DIR:-}
queued=0 spot=0 delete_after=0 dry_run=0 created=0 cmd=""
extra=()

need_value() { (($1 > 1)) || die "$2 needs a value"; }
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    create|setup|run|delete|all)
      [[ -z $cmd ]] || die "two commands given: '$cmd' and '$1'"
      cmd=$1 ;;
    --project) need_value $# "$1"; project=$2; shift ;;
    --project=*) project=${1#*=} ;;
    --zone) need_value $# "$1"; zone=$2; shift ;;
    --zone=*) zone=${1#*=} ;;
    --name) need_value $# "$1"; name=$2; shift ;;
    --name=*) name=${1#*=} ;;
    --accelerator-type) need_value $# "$1"; accel=$2; shift ;;
    --accelerator-type=*) accel=${1#*=} ;;
    --version) need_value $# "$1"; version=$2; shift ;;
    --version=*) version=${1#*=} ;;
    --bucket) need_value $# "$1"; bucket=$2; shift ;;
    --bucket=*) bucket=${1#*=} ;;
    --config) need_value $# "$1"; config=$2; shift ;;
    --config=*) config=${1#*=} ;;
    --run-dir) need_value $# "$1"; run_dir=$2; shift ;;
    --run-dir=*) run_dir=${1#*=} ;;
    --queued) queued=1 ;;
    --spot) spot=1 ;;
    --delete) delete_after=1 ;;
    --dry-run) dry_run=1 ;;
    --workdir|--workdir=*) die "the workdir is gs://BUCKET/RUN_DIR: use --bucket and --run-dir" ;;
    --) shift; extra+=("$@"); break ;;
    *) extra+=("$1") ;;  # --config.* overrides and any other bf_jax.main flag
  esac
  shift
done

[[ -n $cmd ]] || { usage >&2; die "no command given (create, setup, run, delete or all)"; }
if ((delete_after)) && [[ $cmd != all ]]; then
  die "--delete only goes with 'all'; to delete now: launch/tpu_vm.sh delete ..."
fi

# Every setting a command needs, checked before anything runs; all missing ones are named.
required=(project zone name)
case $cmd in
  create) required+=(accel version) ;;
  run) required+=(bucket config) ;;
  all) required+=(accel version bucket config) ;;
esac
declare -A flag_of=([project]=--project [zone]=--zone [name]=--name [accel]=--accelerator-type
                    [version]=--version [bucket]=--bucket [config]=--config)
declare -A env_of=([project]=TPU_PROJECT [zone]=TPU_ZONE [name]=TPU_NAME
                   [accel]=TPU_ACCELERATOR_TYPE [version]=TPU_VERSION [bucket]=TPU_BUCKET
                   [config]=CONFIG)
missing=0
for var in "${required[@]}"; do
  if [[ -z ${!var} ]]; then
    echo "tpu_vm.sh: error: '$cmd' needs ${flag_of[$var]} (or env ${env_of[$var]})" >&2
    missing=1
  fi
done
((missing == 0)) || exit 2
if ((!dry_run)); then
  command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI and run 'gcloud auth login'"
fi

bucket=${bucket#gs://}
bucket=${bucket%/}
run_dir=${run_dir:-bf_jax/$name}
run_dir=${run_dir#/}
workdir=gs://$bucket/$run_dir
loc=(--zone "$zone" --project "$project")
tarball=${TMPDIR:-/tmp}/bf_jax-$name.tar.gz
remote_dir=bf_jax  # in the home directory of each worker (ssh commands start there)

do_create() {
  local spot_flag=()
  ((spot)) && spot_flag=(--spot)
  if ((queued)); then
    # The queued resource gets the node's name: one name to remember, for delete too.
    run gcloud compute tpus queued-resources create "$name" --node-id "$name" "${loc[@]}" \
      --accelerator-type "$accel" --runtime-version "$version" "${spot_flag[@]}"
    created=1
    wait_active
  else
    run gcloud compute tpus tpu-vm create "$name" "${loc[@]}" \
      --accelerator-type "$accel" --version "$version" "${spot_flag[@]}"
    created=1
  fi
}

# A queued resource is granted when capacity frees up: minutes or hours.
wait_active() {
  local state describe=(gcloud compute tpus queued-resources describe "$name" "${loc[@]}"
                        --format 'value(state.state)')
  if ((dry_run)); then show "${describe[@]}"; return; fi
  while :; do
    state=$("${describe[@]}") || state=""  # a transient error: ask again next time
    case $state in
      ACTIVE) return 0 ;;
      FAILED|SUSPENDING|SUSPENDED) die "queued resource $name is $state; delete it and retry" ;;
    esac
    echo "queued resource $name: ${state:-unknown}; checking again in 60 s" >&2
    sleep 60
  done
}

do_setup() {
  # git archive ships the committed tree only: what is copied is exactly a known commit.
  if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    echo "tpu_vm.sh: warning: uncommitted changes are not copied (git archive HEAD)" >&2
  fi
  run git -C "$ROOT" archive --format=tar.gz -o "$tarball" HEAD
  run gcloud compute tpus tpu-vm scp "$tarball" "$name:$remote_dir.tar.gz" --worker=all "${loc[@]}"
  # TPU images ship an older Python; uv fetches 3.12 (jax >= 0.11 needs it). jax[tpu] brings
  # libtpu at the version matching the jax pin of pyproject.toml; the gcs extra lets the
  # writers reach the gs:// workdir. An existing venv is kept.
  local setup="set -e; mkdir -p $remote_dir; tar -xzf $remote_dir.tar.gz -C $remote_dir; cd $remote_dir"
  # shellcheck disable=SC2016  # $HOME and $PATH are for the worker's shell to expand
  setup+='; export PATH="$HOME/.local/bin:$PATH"'
  setup+='; command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh'
  setup+='; [ -x .venv/bin/python ] || uv venv --python 3.12 .venv'
  setup+="; uv pip install --python .venv/bin/python 'jax[tpu]' -e '.[train,gcs]'"
  run gcloud compute tpus tpu-vm ssh "$name" "${loc[@]}" --worker=all --command "$setup"
}

do_run() {
  # The same command on every worker; each is one JAX process of the pod. Rerunning resumes
  # from the last checkpoint in the bucket.
  local train
  train="cd $remote_dir && $(show .venv/bin/python -m bf_jax.main --config "$config" \
    --workdir "$workdir" "${extra[@]}")"
  run gcloud compute tpus tpu-vm ssh "$name" "${loc[@]}" --worker=all --command "$train"
}

do_delete() {
  if ((queued)); then
    # --force deletes the node together with its queued resource.
    run gcloud compute tpus queued-resources delete "$name" "${loc[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$name" "${loc[@]}" --quiet
  fi
}

# Deletes only what this invocation created: a failed create may mean the name is taken by a
# TPU that is not ours to delete.
cleanup() {
  local rc=$?
  if ((created)); then do_delete || true; fi
  exit "$rc"
}

case $cmd in
  create) do_create ;;
  setup) do_setup ;;
  run) do_run ;;
  delete) do_delete ;;
  all)
    if ((delete_after && !dry_run)); then
      # Also on failure or Ctrl-C: an idle TPU costs money; the checkpoints stay in the bucket.
      trap cleanup EXIT
      trap 'exit 130' INT
      trap 'exit 143' TERM
    fi
    do_create
    do_setup
    do_run
    if ((delete_after && dry_run)); then do_delete; fi
    ;;
esac
