"""The main job: both arms per seed, paired, on the embedded digits (shortened runs)."""

import json
import shutil

import pytest
from helpers import ROOT

from bf_jax import compare, demo


@pytest.mark.slow  # trains 4 short runs
def test_demo_pairs_the_arms_and_writes_the_comparison(tmp_path):
  def shorten(config):
    config.total_steps, config.optim.warmup_steps = 20, 0

  (tmp_path / "bf_off_seed7").mkdir()  # left by an earlier, longer demo: not this comparison
  (tmp_path / "bf_off_seed7" / "result.json").write_text('{"acc": 0.5}')
  report = demo.run_arms(str(ROOT / "configs" / "digits_lt.py"), tmp_path, seeds=2,
                         adjust=shorten)
  assert report["pairs"] == ["seed 0", "seed 1"] and report["names"] == ["baseline", "+BatchFormer"]
  assert report["unpaired"] == {"baseline": [], "+BatchFormer": []}
  assert report["checks"]["config_differs"] == {}  # only bf.* differs: same data and order
  assert report["checks"]["init_same"] == {"backbone": ["seed 0", "seed 1"],
                                           "head": ["seed 0", "seed 1"]}
  assert not report["checks"]["init_differs"]
  assert {"acc", "many_acc", "medium_acc", "few_acc"} <= set(report["metrics"])
  for name in ("compare.md", "compare.json", "paired_differences.png", "per_class_accuracy.png"):
    assert (tmp_path / name).stat().st_size > 0
  assert "few_acc: +BatchFormer - baseline = " in (tmp_path / "compare.md").read_text()
  # What the layer does: each +BatchFormer run's pictures and tables, their mean over seeds.
  for name in ("attention.png", "gradient_share.png", "probe.json"):
    assert (tmp_path / "bf_on_seed1" / name).stat().st_size > 0
  assert not (tmp_path / "bf_off_seed0" / "probe.json").exists()
  mean = demo.probe_summary(tmp_path, 2)
  assert mean["seeds"] == 2 and mean["probe_batches"] == 4
  assert "| queries \\ keys |" in (tmp_path / "probe.md").read_text()


@pytest.mark.slow  # trains 5 short runs
def test_keep_trains_only_what_is_missing_and_a_baseline_can_be_shared(tmp_path):
  config_path = str(ROOT / "configs" / "digits_lt.py")

  def shorten(config):
    config.total_steps, config.optim.warmup_steps = 20, 0

  first = demo.run_arms(config_path, tmp_path / "cell", seeds=1, adjust=shorten, keep=True)
  run = tmp_path / "cell" / "bf_on_seed0"
  stamp = (run / "result.json").stat().st_mtime_ns
  assert json.loads((run / demo.TIME_FILE).read_text())["seconds"] > 0
  again = demo.run_arms(config_path, tmp_path / "cell", seeds=1, adjust=shorten, keep=True)
  assert (run / "result.json").stat().st_mtime_ns == stamp  # kept, not trained again
  assert again["metrics"]["acc"]["diffs"] == first["metrics"]["acc"]["diffs"]
  assert set(again["seconds_per_run"]) == {"baseline", "+BatchFormer"}
  # A share of the cell: seed 1 only, no comparison; then one call with --keep compares both.
  compared = (tmp_path / "cell" / "compare.json").stat().st_mtime_ns
  assert demo.run_arms(config_path, tmp_path / "cell", seeds=2, adjust=shorten, keep=True,
                       first_seed=1) is None
  assert (run / "result.json").stat().st_mtime_ns == stamp
  share = tmp_path / "cell" / "bf_on_seed1" / "result.json"
  share_stamp = share.stat().st_mtime_ns
  assert (tmp_path / "cell" / "compare.json").stat().st_mtime_ns == compared
  both = demo.run_arms(config_path, tmp_path / "cell", seeds=2, adjust=shorten, keep=True)
  assert both["pairs"] == ["seed 0", "seed 1"] and share.stat().st_mtime_ns == share_stamp

  def longer(config):
    config.total_steps, config.optim.warmup_steps = 30, 0

  with pytest.raises(ValueError, match=r"(?s)--keep: .*cell/bf_off_seed0 holds a run of another "
                                       r"config.*total_steps: 20 \(recorded\) -> 30"):
    demo.run_arms(config_path, tmp_path / "cell", seeds=1, adjust=longer, keep=True)
  assert (run / "result.json").stat().st_mtime_ns == stamp  # nothing lost
  # A finished run's records without its checkpoint (copied into the repository) are kept, and
  # checked the same way.
  shutil.rmtree(tmp_path / "cell" / "bf_off_seed0" / "checkpoints")
  assert demo.run_arms(config_path, tmp_path / "cell", seeds=1, adjust=shorten, keep=True)[
      "metrics"]["acc"]["diffs"] == first["metrics"]["acc"]["diffs"]
  with pytest.raises(ValueError, match=r"--keep: .*bf_off_seed0 finished with another config "
                                       r"\(total_steps differ\)"):
    demo.run_arms(config_path, tmp_path / "cell", seeds=1, adjust=longer, keep=True)
  assert json.loads((tmp_path / "cell" / "bf_off_seed0" / "result.json").read_text())[
      "step"] == 20  # not trained over

  def grouped(config):
    shorten(config)
    config.bf.scope = "8"

  report = demo.run_arms(config_path, tmp_path / "g8", seeds=1, adjust=grouped,
                         baseline=tmp_path / "cell", per_class=True)
  assert not (tmp_path / "g8" / "bf_off_seed0").exists()  # the cell's baseline, shared
  assert report["checks"]["config_differs"] == {}  # bf.scope is part of the treatment
  assert report["metrics"]["acc"]["baseline_mean"] == first["metrics"]["acc"]["baseline_mean"]
  assert {f"class{c}_acc" for c in range(10)} <= set(report["metrics"])
  with pytest.raises(FileNotFoundError, match=r"--baseline .*bf_off_seed2 is not a finished run"):
    demo.run_arms(config_path, tmp_path / "g8", seeds=3, adjust=grouped,
                  baseline=tmp_path / "cell")
  assert not (tmp_path / "g8" / "bf_on_seed1").exists()  # refused before training


@pytest.mark.parametrize("argv, message", [
    (["--arg", "smoke,bf=on"], "sets ['bf'], which the demo sets itself"),
    (["--arg", "seed=3"], "sets ['seed'], which the demo sets itself"),
    (["--arg", "smok"], "config arg 'smok' is unknown"),
    (["--config", "configs/no_such.py"], "No such file or directory"),
    (["--seeds", "4", "--first_seed", "4"], "--first_seed=4 must be in 0..--seeds-1 (3)"),
])
def test_the_demo_refuses_what_it_cannot_honour_before_training(tmp_path, capsys, argv, message):
  with pytest.raises(SystemExit) as exit_:
    demo.main(["--workdir", str(tmp_path / "demo"), *argv])
  assert exit_.value.code == 2 and message in capsys.readouterr().err
  assert not (tmp_path / "demo").exists()


def test_time_per_run_leaves_out_resumed_runs(tmp_path):
  runs = []
  for name, record in (("a", {"seconds": 10.0, "resumed": False}), ("b", {"seconds": 20.0}),
                       ("c", {"seconds": 3.0, "resumed": True}), ("d", None)):
    (tmp_path / name).mkdir()
    if record is not None:
      (tmp_path / name / demo.TIME_FILE).write_text(json.dumps(record))
    runs.append(compare.Run(tmp_path / name, {}, {}, {}))
  assert demo._mean_seconds(runs) == 15.0  # c started from a checkpoint, d has no record
  assert demo._mean_seconds(runs[2:]) is None
