#!/usr/bin/env bash
# The Fashion-MNIST-LT tables of docs/fashion_mnist.md: every cell 10 paired seeds (baseline vs
# +BatchFormer, bf_jax.demo), finished runs kept, so a stopped sweep resumes where it was.
#
#   make fashion-mnist                     # installs the data if missing, then this
#   tools/fashion_mnist_tables.sh [CELL...]   # some cells only: balanced if100_bs g8 ...
#
# Env: PY (the venv's python), RUNS (default runs/fmnist), SEEDS (default 10), DATA_DIR (the
# folder of the four IDX files; default Debian's /usr/share/datasets/fashion-mnist).
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/fmnist}
SEEDS=${SEEDS:-10}
CONFIG=configs/fashion_mnist_lt.py
DATA=${DATA_DIR:+,data_dir=$DATA_DIR}

cell() {  # name, config args, more demo flags
  local name=$1 arg=$2$DATA
  shift 2
  echo "== $name: python -m bf_jax.demo --config $CONFIG --arg $arg --seeds $SEEDS --keep --per_class $* --workdir $RUNS/$name"
  "$PY" -m bf_jax.demo --config "$CONFIG" --arg "$arg" --seeds "$SEEDS" --keep --per_class "$@" \
    --workdir "$RUNS/$name"
}

run() {
  case $1 in
    balanced)  # the sanity row: the same CNN and recipe on all 60,000 balanced images
      if [ ! -f "$RUNS/balanced/result.json" ]; then
        "$PY" -m bf_jax.main --config "$CONFIG:imbalance=1,bf=off$DATA" --workdir "$RUNS/balanced"
      fi
      cat "$RUNS/balanced/result.json" ;;
    if100_bs) cell if100_bs loss=balanced_softmax ;;
    if100_ce) cell if100_ce loss=ce ;;
    if100_ldam) cell if100_ldam loss=ldam_drw ;;
    if10_bs) cell if10_bs loss=balanced_softmax,imbalance=10 ;;
    g8|g32|g128)  # attention within groups of 8, 32, 128 of the batch of 256; if100_bs's baseline
      cell "if100_bs_$1" "loss=balanced_softmax,scope=${1#g}" --baseline "$RUNS/if100_bs" ;;
    gains)
      "$PY" -m bf_jax.compare --gains "$RUNS"/if100_bs_g{8,32,128} "$RUNS/if100_bs" \
        --labels 8,32,128,256 --metrics acc,head_acc,mid_acc,tail_acc \
        --xlabel "BatchFormer's attention group (samples; 256 = the batch)" \
        --out "$RUNS/group_gain.png" ;;
    archive)  # the finished runs' records, no checkpoints, into the repository (restore: cp -r)
      for result in "$RUNS"/*/result.json "$RUNS"/*/*/result.json; do
        [ -f "$result" ] || continue
        run=$(dirname "$result"); dest=benchmarks/results/fashion_mnist/${run#"$RUNS"/}
        mkdir -p "$dest"
        for f in result.json per_class.json config.json config_history.jsonl init.json \
                 probe.json wall_time.json; do
          if [ -f "$run/$f" ]; then cp "$run/$f" "$dest/"; fi
        done
      done
      for cell in "$RUNS"/*/; do  # a cell's comparison, where it has one
        [ -f "$cell/compare.json" ] || continue
        dest=benchmarks/results/fashion_mnist/$(basename "$cell"); mkdir -p "$dest"
        cp "$cell"/compare.json "$cell"/compare.md "$dest/"
        if [ -f "$cell/probe.md" ]; then cp "$cell/probe.md" "$dest/"; fi
      done
      echo "copied the records into benchmarks/results/fashion_mnist" ;;
    report)  # the Markdown of docs/fashion_mnist.md, from the cells run so far
      "$PY" tools/fashion_mnist_report.py "$RUNS" > "$RUNS/report.md"
      echo "wrote $RUNS/report.md" ;;
    *) echo "unknown cell $1" >&2; exit 2 ;;
  esac
}

cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(balanced if100_bs g8 g32 g128 gains if100_ce if100_ldam if10_bs
                                 report)
for c in "${cells[@]}"; do run "$c"; done
