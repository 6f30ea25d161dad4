"""Paired comparisons: the statistics against hand computations, pairing and its checks, the CLI."""

import json
import math

import numpy as np
import pytest

from bf_jax import compare


def test_paired_stats_match_the_hand_computation():
  # d = 1, 2, 3, -1: mean 1.25, sd = sqrt(8.75 / 3) = 1.70783, se = sd / 2; t(0.975, 3) = 3.182446;
  # t = 1.46385, two-sided p from the df=3 closed form 0.23944; sign test 3 wins of 4:
  # 2 * (1 + 4) / 16 = 0.625.
  s = compare.paired_stats(np.array([1.0, 2.0, 3.0, -1.0]))
  assert (s["n"], s["wins"], s["ties"], s["losses"]) == (4, 3, 0, 1)
  assert s["mean"] == pytest.approx(1.25) and s["se"] == pytest.approx(0.853913, abs=1e-6)
  assert s["ci_low"] == pytest.approx(1.25 - 3.182446 * 0.853913, abs=1e-5)
  assert s["ci_high"] == pytest.approx(1.25 + 3.182446 * 0.853913, abs=1e-5)
  assert s["t_p"] == pytest.approx(0.23944, abs=1e-5) and s["sign_p"] == pytest.approx(0.625)
  # Ties leave the sign test: 2 wins of 2 decided, p = 2 / 4.
  s = compare.paired_stats(np.array([0.0, 1.0, 0.0, 2.0]))
  assert (s["wins"], s["ties"], s["losses"]) == (2, 2, 0) and s["sign_p"] == pytest.approx(0.5)
  # The same gain in every pair: no spread, distinguishable; one pair gives no interval.
  assert compare.paired_stats(np.full(3, 0.5))["t_p"] == 0.0
  one = compare.paired_stats(np.array([0.3]))
  assert math.isnan(one["ci_low"]) and "single pair" in compare.sentence("acc", one, ("a", "b"), 1)


def _run(folder, seed, result, bf=False, init=None, lr=0.1):
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(json.dumps(
      {"seed": seed, "bf": {"enabled": bf}, "optim": {"lr": lr}}))
  (folder / "result.json").write_text(json.dumps({"step": 10, "preempted": False, **result}))
  (folder / "init.json").write_text(json.dumps(init or {"backbone": f"b{seed}", "head": f"h{seed}"}))


def test_runs_pair_by_seed_and_the_pairing_is_checked(tmp_path):
  for seed, (a, b) in enumerate([(0.80, 0.82), (0.70, 0.75), (0.90, 0.91)]):
    _run(tmp_path / f"off{seed}", seed, {"acc": a, "group": {"few_acc": a / 2}})
    _run(tmp_path / f"on{seed}", seed, {"acc": b, "group": {"few_acc": b / 2}}, bf=True,
         init={"backbone": f"b{seed}", "head": f"h{seed}", "bf": "x"})
  _run(tmp_path / "off7", 7, {"acc": 0.5})  # no partner
  (tmp_path / "off_unfinished").mkdir()  # no result.json: not a run
  report = compare.compare(compare.find_runs([str(tmp_path / "off*")]),
                           compare.find_runs([str(tmp_path / "on*")]), ("base", "bf"))
  assert report["pairs"] == ["seed 0", "seed 1", "seed 2"]
  assert report["unpaired"] == {"base": ["seed 7"], "bf": []}
  acc = report["metrics"]["acc"]
  assert acc["scale"] == 100.0 and acc["diffs"] == pytest.approx([0.02, 0.05, 0.01])
  assert acc["mean"] == pytest.approx(0.08 / 3) and acc["wins"] == 3
  assert set(report["metrics"]) == {"acc", "group.few_acc"}  # step/preempted are not metrics
  text = compare.markdown(report)
  assert "| acc | 80.00 | 82.67 | +2.67 +- " in text
  assert "Same initial parameters in both arms: backbone (3 of 3 pairs), head (3 of 3 pairs)" in text
  assert "apart from bf.* (same data split, data order and schedule): 3 of 3 pairs" in text
  assert "Unpaired, left out: base has ['seed 7'] without a partner" in text
  assert "acc: bf - base = +2.67 (95% CI" in text

  # A pair that did not start alike, or trained another config, is named.
  _run(tmp_path / "x_off", 0, {"acc": 0.8}, lr=0.2)
  _run(tmp_path / "x_on", 0, {"acc": 0.8}, bf=True, init={"backbone": "other", "head": "h0"})
  lines = compare.pair_lines(compare.compare(compare.find_runs([str(tmp_path / "x_off")]),
                                                compare.find_runs([str(tmp_path / "x_on")])))
  assert any("differ in more than the BatchFormer's fields: {'seed 0': ['optim.lr']}" in line
             for line in lines)
  assert any("different initial parameters for the same seed in {'backbone': ['seed 0']}" in line
             for line in lines)


def test_domainbed_runs_pair_by_test_domain_and_trial(tmp_path):
  for arm in ("erm", "bf"):
    for domain in ("A", "B"):
      _run(tmp_path / arm / domain / "trial0", 0,
           {"test_domain": domain, "trial_seed": 0,
            "selections": {"swad": {"test_acc": 60.0 + (arm == "bf") + (domain == "B")}},
            "erm_val_step": 5}, bf=arm == "bf")
  report = compare.compare(compare.find_runs([str(tmp_path / "erm")]),
                           compare.find_runs([str(tmp_path / "bf")]))
  assert report["pairs"] == ["seed 0, test domain A, trial 0", "seed 0, test domain B, trial 0"]
  swad = report["metrics"]["selections.swad.test_acc"]
  assert swad["scale"] == 1.0 and swad["diffs"] == [1.0, 1.0]  # already in percent
  assert set(report["metrics"]) == {"selections.swad.test_acc"}  # a step is not a metric


def test_an_arm_with_two_runs_of_a_seed_is_refused(tmp_path):
  _run(tmp_path / "a" / "r1", 0, {"acc": 0.8})
  _run(tmp_path / "a" / "r2", 0, {"acc": 0.9})
  _run(tmp_path / "b" / "r1", 0, {"acc": 0.8})
  with pytest.raises(ValueError, match=r"baseline: more than one run for \['seed 0'\]"):
    compare.compare(compare.find_runs([str(tmp_path / "a")]),
                    compare.find_runs([str(tmp_path / "b")]))


def test_cli_writes_the_table_json_and_plot(tmp_path, capsys):
  for seed in range(3):
    _run(tmp_path / "runs" / f"off{seed}", seed, {"acc": 0.8 + 0.01 * seed})
    _run(tmp_path / "runs" / f"on{seed}", seed, {"acc": 0.81 + 0.01 * seed}, bf=True)
  compare.main(["--baseline", str(tmp_path / "runs" / "off*"),
                "--treatment", str(tmp_path / "runs" / "on*"), "--out", str(tmp_path / "out")])
  out = capsys.readouterr().out
  assert "distinguishable from zero at the 5% level; +BatchFormer is better" in out
  assert json.loads((tmp_path / "out" / "compare.json").read_text())["pairs"] == [
      "seed 0", "seed 1", "seed 2"]
  assert (tmp_path / "out" / "paired_differences.png").stat().st_size > 0
  with pytest.raises(SystemExit) as e:
    compare.main(["--baseline", str(tmp_path / "nothing*"), "--treatment", str(tmp_path)])
  assert e.value.code == 2
  assert "nothing*' matches nothing" in capsys.readouterr().err


def test_what_the_backward_pass_recomputes_is_not_a_pairing_difference():
  a = {"model": {"remat": "none", "name": "deit_tiny"}, "bf": {"enabled": False}}
  b = {"model": {"remat": "streams", "name": "deit_tiny"}, "bf": {"enabled": True}}
  assert compare._config_differences(a, b) == set()
  assert compare._config_differences(a, {**b, "model": {"remat": "all", "name": "x"}}) == {
      "model.name"}


def test_a_field_an_older_run_never_recorded_is_no_difference_at_its_default():
  """A sweep spread over versions: runs recorded before the schema gained model.scan_layers
  pair with runs recording its default, never with runs that changed it."""
  old = {"model": {"name": "convnet"}, "bf": {"enabled": False}}
  new = {"model": {"name": "convnet", "scan_layers": False}, "bf": {"enabled": True}}
  assert compare._config_differences(old, new) == set()
  assert compare._config_differences(old, {**new, "model": {"name": "convnet",
                                                            "scan_layers": True}}) == {
      "model.scan_layers"}


def test_a_result_the_run_went_past_is_refused(tmp_path):
  """A finished 10-step run resumed to train longer keeps its old result.json until it ends."""
  _run(tmp_path / "off0", 0, {"acc": 0.8})
  config = json.loads((tmp_path / "off0" / "config.json").read_text())
  (tmp_path / "off0" / "config.json").write_text(json.dumps({**config, "total_steps": 20}))
  with pytest.raises(ValueError, match=r"from step 10, but the run's config.json says "
                                       r"total_steps=20"):
    compare.find_runs([str(tmp_path / "off0")])


def test_arms_that_are_the_same_runs_or_the_same_config_are_refused(tmp_path):
  for seed in range(2):
    _run(tmp_path / f"off{seed}", seed, {"acc": 0.8})
    _run(tmp_path / f"also_off{seed}", seed, {"acc": 0.81})
  off = compare.find_runs([str(tmp_path / "off*")])
  with pytest.raises(ValueError, match="the same runs are in both arms"):
    compare.compare(off, compare.find_runs([str(tmp_path / "off1")]))
  with pytest.raises(ValueError, match="trained the same config .* no treatment to compare"):
    compare.compare(off, compare.find_runs([str(tmp_path / "also_off*")]))


def test_settings_that_change_from_pair_to_pair_are_named(tmp_path):
  for seed, lr in enumerate([0.1, 0.05, 0.05]):
    _run(tmp_path / f"off{seed}", seed, {"acc": 0.8}, lr=lr)
    _run(tmp_path / f"on{seed}", seed, {"acc": 0.82}, bf=True, lr=lr)
  report = compare.compare(compare.find_runs([str(tmp_path / "off*")]),
                           compare.find_runs([str(tmp_path / "on*")]), ("base", "bf"))
  assert report["checks"]["varies"] == {"base": ["optim.lr"], "bf": ["optim.lr"]}
  assert "WARNING: the base runs differ from pair to pair in ['optim.lr']" in compare.markdown(
      report)


def test_the_default_out_never_overwrites_an_earlier_comparison(tmp_path):
  for seed in range(2):
    _run(tmp_path / "runs" / f"off{seed}", seed, {"acc": 0.8})
    _run(tmp_path / "runs" / f"on{seed}", seed, {"acc": 0.81}, bf=True)
  (tmp_path / "runs" / "compare.md").write_text("the demo's")
  argv = ["--baseline", str(tmp_path / "runs" / "off*"), "--treatment",
          str(tmp_path / "runs" / "on*")]
  compare.main(argv)
  compare.main(argv)
  assert (tmp_path / "runs" / "compare.md").read_text() == "the demo's"
  assert (tmp_path / "runs" / "compare" / "compare.md").exists()
  assert (tmp_path / "runs" / "compare_2" / "compare.md").exists()


def test_gains_plot_one_point_per_comparison_with_its_interval(tmp_path, capsys):
  folders = []
  for g, gain in ((8, 0.0), (32, 0.01)):
    for seed in range(3):
      _run(tmp_path / f"g{g}" / f"off{seed}", seed, {"acc": 0.8 + 0.01 * seed, "tail_acc": 0.5})
      _run(tmp_path / f"g{g}" / f"on{seed}", seed, {"acc": 0.8 + gain + 0.002 * seed,
                                                    "tail_acc": 0.5 + gain}, bf=True)
    compare.main(["--baseline", str(tmp_path / f"g{g}" / "off*"), "--treatment",
                  str(tmp_path / f"g{g}" / "on*"), "--out", str(tmp_path / f"c{g}")])
    folders.append(str(tmp_path / f"c{g}"))
  capsys.readouterr()
  compare.main(["--gains", *folders, "--labels", "8,32", "--metrics", "acc,tail_acc",
                "--out", str(tmp_path / "gain.png")])
  lines = capsys.readouterr().out.splitlines()
  assert [line.split(" (")[0] for line in lines[2:4]] == ["8: tail_acc +0.00",
                                                         "32: tail_acc +1.00"]
  # Differences: -0.0, -0.8, -1.6 points (group 8) and +1.0, +0.2, -0.6 (group 32).
  assert lines[0].startswith("8: acc -0.80 (95% CI -2.79 to +1.19, n=3)")
  assert lines[1].startswith("32: acc +0.20 (95% CI -1.79 to +2.19, n=3)")
  assert (tmp_path / "gain.png").stat().st_size > 0
  for argv, message in ((["--labels", "8"], "2 comparison folders but 1 labels"),
                        (["--labels", "8,32", "--metrics", "acc,few_acc"],
                         "has no metric 'few_acc'")):
    with pytest.raises(SystemExit) as e:
      compare.main(["--gains", *folders, "--out", str(tmp_path / "x.png"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
  assert not (tmp_path / "x.png").exists()
