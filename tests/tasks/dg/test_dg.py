"""Domain generalization: splits, per-domain balanced batches, SWAD in the loop, the sweep table,
resume, on a tiny generated three-domain image-folder dataset."""

import json
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

from bf_jax import compare, tasks
from bf_jax.tasks.dg import data as dg_data
from bf_jax.tasks.dg import domains, sweep
from bf_jax.tasks.dg import train as dg_train
from bf_jax.tasks.dg.domains import DomainSetInfo
from bf_jax.tasks.dg.swad import SwadAverager
from bf_jax.tasks import base_config

NAME = "toy_dg"
DOMAINS = ("red", "green", "blue")
CLASSES = ("bars", "dots", "plain")
INFO = DomainSetInfo(DOMAINS, len(CLASSES))
PER_CLASS = 10  # images per (domain, class): 30 per domain, 24 in / 6 out


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
  """The toy dataset is known to the registry (config checks read it) for each test."""
  monkeypatch.setitem(domains.DG_DATASETS, NAME, INFO)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
  """``<domain>/<class>/<i>.png``: a class is a pattern, a domain a colour tint, plus noise."""
  root = tmp_path_factory.mktemp("dg_raw")
  rng = np.random.default_rng(0)
  for di, d in enumerate(DOMAINS):
    for ci, c in enumerate(CLASSES):
      (root / d / c).mkdir(parents=True)
      for k in range(PER_CLASS):
        img = np.full((10, 12, 3), 40, np.int64)
        img[..., di] = 160
        if ci == 0:
          img[:, ::3] = 250
        elif ci == 1:
          img[::3, ::3] = 250
        img += rng.integers(-20, 20, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / d / c / f"{k}.png")
  out = tmp_path_factory.mktemp("dg_data")
  domains.prepare(NAME, root, out, info=INFO)
  return out


def toy_config(data_dir, **dg):
  c = base_config()
  c.task, c.seed = "dg", 0
  c.data.update(name=NAME, num_classes=3, data_dir=str(data_dir), image_size=8,
                augment="domainbed")
  c.model.update(name="cnn", width=8, depth=1, freeze_bn=True)
  c.bf.update(enabled=True, dropout=0.1)
  c.dg.update(batch_per_domain=4, trial_seeds=(0,), **dg)
  c.batch_size, c.eval_batch_size = 8, 16
  c.total_steps, c.eval_every_steps, c.log_every_steps = 10, 5, 5
  c.ckpt.every_steps = 0
  c.optim.update(name="adamw", lr=3e-3, weight_decay=0.0, schedule="constant")
  return c


# --------------------------------------------------------------------------- batches and splits


def test_balanced_batches_draw_each_domain_equally_and_cover_its_epochs():
  groups = [np.arange(100, 105), np.arange(200, 207)]
  ds = dg_data.balanced_index_batches(groups, per_group=3, seed=0)
  batches = np.stack([ds[s] for s in range(35)])  # 105 draws from g0 (21 epochs), 105 from g1
  assert batches.shape == (35, 6)
  assert np.isin(batches[:, :3], groups[0]).all() and np.isin(batches[:, 3:], groups[1]).all()
  # Each domain's stream is whole shuffled epochs of that domain: 5 steps = 3 epochs of g0.
  for lo, hi, group, steps in ((0, 3, groups[0], 5), (3, 6, groups[1], 7)):
    draws = batches[:steps, lo:hi].ravel()
    np.testing.assert_array_equal(np.bincount(draws - group[0]), np.full(len(group), 3))
  again = dg_data.balanced_index_batches(groups, per_group=3, seed=0)
  np.testing.assert_array_equal(again[17], ds[17])  # a pure function of the step: resumable
  other = dg_data.balanced_index_batches(groups, per_group=3, seed=1)
  assert any((other[s] != ds[s]).any() for s in range(5))


def test_splits_hold_out_the_test_domain_and_do_not_depend_on_it(data_dir):
  cfg = toy_config(data_dir)
  run = dg_data.load_dg(cfg.data, cfg.dg, "green", trial_seed=0)
  assert run.train_domains == ["red", "blue"] and list(run.val_sources) == ["red", "blue"]
  offsets = run.train_source.offsets  # red 0..29, green 30..59, blue 60..89
  train = np.concatenate(run.train_groups)
  assert not ((train >= offsets[1]) & (train < offsets[2])).any()  # nothing of green trains
  assert [len(g) for g in run.train_groups] == [24, 24]
  for d, group, lo in (("red", run.train_groups[0], offsets[0]),
                       ("blue", run.train_groups[1], offsets[2])):
    out = run.val_sources[d].indices
    assert len(out) == 6 and not np.isin(out, group - lo).any()  # out-split never trains
    assert sorted(np.concatenate([out, group - lo])) == list(range(30))
  test = run.test_sources
  assert len(test["in"]) == 24 and len(test["out"]) == 6
  assert run.train_class_counts.sum() == 48
  # Holding out another domain leaves blue's split as it was (seeded by trial and domain only).
  run_red = dg_data.load_dg(cfg.data, cfg.dg, "red", trial_seed=0)
  np.testing.assert_array_equal(run_red.val_sources["blue"].indices,
                                run.val_sources["blue"].indices)
  run_seed1 = dg_data.load_dg(cfg.data, cfg.dg, "green", trial_seed=1)
  assert (run_seed1.val_sources["blue"].indices != run.val_sources["blue"].indices).any()


def test_load_dg_errors_name_the_value_and_the_fix(data_dir, tmp_path):
  cfg = toy_config(data_dir)
  with pytest.raises(ValueError, match="'purple'.*red"):
    dg_data.load_dg(cfg.data, cfg.dg, "purple", 0)
  cfg.dg.batch_per_domain = 25
  with pytest.raises(ValueError, match="batch_per_domain=25"):
    dg_data.load_dg(cfg.data, cfg.dg, "red", 0)
  cfg = toy_config(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="python -m bf_jax.tasks.dg.domains prepare"):
    dg_data.load_dg(cfg.data, cfg.dg, "red", 0)


@pytest.mark.parametrize("change, match", [
    (dict(batch_size=12), "batch_size=12.*4 x 2 = 8"),
    (dict(test_domains=("purple",)), "dg.test_domains"),
    (dict(data_dir=""), "data.data_dir"),
    (dict(freeze_bn=False), "model.freeze_bn"),
    (dict(eval_every_steps=3), "eval_every_steps=3 must divide total_steps=10"),
    (dict(image_size=0), "data.image_size"),
    (dict(algorithm="swa"), "dg.algorithm"),
])
def test_config_check_refuses_bad_dg_settings(change, match):
  c = toy_config("/data")
  c.batch_size = change.get("batch_size", c.batch_size)
  c.dg.test_domains = change.get("test_domains", c.dg.test_domains)
  c.dg.algorithm = change.get("algorithm", c.dg.algorithm)
  c.data.data_dir = change.get("data_dir", c.data.data_dir)
  c.data.image_size = change.get("image_size", c.data.image_size)
  c.model.freeze_bn = change.get("freeze_bn", c.model.freeze_bn)
  c.eval_every_steps = change.get("eval_every_steps", c.eval_every_steps)
  tasks.validate(toy_config("/data"))  # the unchanged config passes
  with pytest.raises(ValueError, match=match):
    tasks.validate(c)


# --------------------------------------------------------------------------- selection, table


def test_swad_window_steps_and_average_on_a_scripted_loss_curve():
  """Evaluations every 5 steps; the loss bottoms out at evaluation 2 (t_s) and stays above
  1.3 x its value from evaluation 6 on (t_e): SWAD averages steps 11..30."""
  losses = [5, 4, 3, 3.5, 3.6, 3.7, 10, 10, 10, 10, 10, 10]
  averager = SwadAverager()
  step = 0
  for loss in losses:
    for _ in range(5):
      step += 1
      averager.add_step({"w": np.float32(step)})
    averager.end_segment(loss)
  assert (averager.t_s, averager.t_e) == (2, 6)
  window = dg_train.window_steps(averager, eval_every=5, last_step=step)
  assert window == {"first_step": 11, "last_step": 30}
  np.testing.assert_allclose(averager.averaged()["w"], np.mean(np.arange(11, 31)))


def test_swad_checkpoint_parts_round_trip():
  averager = SwadAverager(n_converge=2, n_tolerance=2)
  for i, loss in enumerate([3.0, 2.0, 2.5]):
    for _ in range(2):
      averager.add_step({"w": np.full(3, float(i), np.float32)})
    averager.end_segment(loss)
  averager.add_step({"w": np.full(3, 7.0, np.float32)})
  info, arrays = averager.checkpoint_parts()
  json.dumps(info)  # the bookkeeping is plain JSON
  assert sorted(SwadAverager.sum_names(info)) == sorted(arrays)
  back = SwadAverager.from_checkpoint_parts(json.loads(json.dumps(info)), arrays)
  np.testing.assert_allclose(back.averaged()["w"], averager.averaged()["w"])
  assert (back.t_s, back.t_e, back.n_evals) == (averager.t_s, averager.t_e, averager.n_evals)
  with pytest.raises(ValueError, match="damaged"):
    SwadAverager.from_checkpoint_parts(info, {})


def test_summarize_picks_best_validation_last_and_oracle():
  history = [{"step": 5, "val_acc": 0.5, "test_in": 0.4, "test_out": 0.3},
             {"step": 10, "val_acc": 0.7, "test_in": 0.6, "test_out": 0.9},
             {"step": 15, "val_acc": 0.7, "test_in": 0.1, "test_out": 0.2},
             {"step": 20, "val_acc": 0.6, "test_in": 0.5, "test_out": 0.4}]
  out = dg_train.summarize(history, {"test_in": 0.8})
  assert out == {"erm_val": 0.6, "erm_val_step": 10, "erm_last": 0.5, "oracle": 0.6, "swad": 0.8}


def test_tabulate_means_over_seeds_and_domains():
  results = [{"test_domain": d, "trial_seed": s, "erm_val": acc, "erm_last": acc, "swad": acc}
             for d, s, acc in (("a", 0, 0.5), ("b", 0, 0.7), ("a", 1, 0.7), ("b", 1, 0.9))]
  table = sweep.tabulate(results, ["a", "b"])
  row = table["selections"]["swad"]
  assert row["a"]["mean"] == pytest.approx(60.0) and row["a"]["std"] == pytest.approx(10.0)
  assert row["avg"]["mean"] == pytest.approx(70.0) and row["avg"]["n"] == 2  # seeds 60 and 80
  text = sweep.format_table(table, "toy")
  assert "| SWAD | 60.0 ± 10.0 | 80.0 ± 10.0 | 70.0 ± 10.0 |" in text


# --------------------------------------------------------------------------- end to end


def test_sweep_trains_every_domain_writes_the_table_and_skips_done_runs(
    data_dir, tmp_path, monkeypatch):
  adds = []
  real_add = SwadAverager.add_step
  monkeypatch.setattr(SwadAverager, "add_step",
                      lambda self, params: (adds.append(1), real_add(self, params))[1])
  config = toy_config(data_dir)
  out = tasks.run(config, tmp_path)
  assert not out["preempted"] and out["domains"] == list(DOMAINS)
  assert len(adds) == 3 * config.total_steps  # SWAD saw every step of every run
  for d in DOMAINS:
    run_dir = sweep.run_dir(tmp_path, d, 0)
    result = json.loads((run_dir / "result.json").read_text())
    assert [h["step"] for h in result["history"]] == [5, 10]
    assert 0.0 <= result["swad"] <= 1.0 and result["swad_eval"]["first_step"] == 6
    assert pathlib.Path(run_dir, "val_loss.png").stat().st_size > 0
  saved = json.loads((tmp_path / "results.json").read_text())
  assert set(saved["selections"]) == {"erm_val", "erm_last", "swad"}
  assert len(saved["runs"]) == 3
  text = (tmp_path / "results.md").read_text()
  assert "| selection | red | green | blue | avg |" in text
  runs = compare.find_runs([str(tmp_path)])  # a sweep's parent: every (domain, trial) run
  assert sorted(r.key[1:] for r in runs) == sorted((d, 0) for d in DOMAINS)
  assert all(r.init and r.config for r in runs)

  monkeypatch.setattr(sweep, "train_one", lambda *a, **k: pytest.fail("a finished run reran"))
  assert tasks.run(config, tmp_path)["selections"] == out["selections"]


def test_preempted_run_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
  """SWAD's sums and the evaluation history travel in the Orbax checkpoint."""
  config = toy_config(data_dir, test_domains=("blue",))
  config.total_steps, config.eval_every_steps = 12, 3
  config.dg.swad_n_converge, config.dg.swad_n_tolerance = 1, 1
  whole = tasks.run(config, tmp_path / "whole", devices=jax.devices()[:2])
  stopped = tasks.run(config, tmp_path / "split", devices=jax.devices()[:2], stop_at=7)
  assert stopped == {"preempted": True, "step": 7, "test_domain": "blue"}
  resumed = tasks.run(config, tmp_path / "split", devices=jax.devices()[:2])
  a, b = (json.loads((sweep.run_dir(p, "blue", 0) / "result.json").read_text())
          for p in (tmp_path / "whole", tmp_path / "split"))
  assert [h["step"] for h in b["history"]] == [3, 6, 9, 12]
  for ha, hb in zip(a["history"], b["history"]):
    assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-5)
  for key in ("first_step", "last_step", "val_loss", "test_in"):
    assert a["swad_eval"][key] == pytest.approx(b["swad_eval"][key], rel=1e-5)
  assert resumed["selections"]["swad"] == whole["selections"]["swad"]


def test_rotated_digits_deals_disjoint_rotated_domains(tmp_path):
  from sklearn.datasets import load_digits

  from bf_jax.tasks.dg import digits

  counts = digits.write_folders(tmp_path)
  assert counts == {"rot0": 450, "rot30": 449, "rot60": 449, "rot90": 449}
  files = {d: sorted(p.stem for p in (tmp_path / d).glob("*/*.png")) for d in counts}
  assert sum(len(set(f)) for f in files.values()) == len(set().union(*map(set, files.values())))
  i = int(files["rot90"][0])
  label = next(p.parent.name for p in (tmp_path / "rot90").glob(f"*/{i}.png"))
  assert int(label) == load_digits().target[i]
  upright = Image.fromarray(np.round(load_digits().images[i] * (255 / 16)).astype(np.uint8))
  upright = np.asarray(upright.resize((16, 16), Image.BILINEAR))
  stored = np.asarray(Image.open(tmp_path / "rot90" / label / f"{i}.png"))
  np.testing.assert_array_equal(stored, np.rot90(upright))  # a quarter turn, counter-clockwise


def test_probe_at_each_eval_on_the_balanced_batches(data_dir, tmp_path):
  """probe.enabled in a DG run: the probe record, pictures and scalars of each evaluation."""
  config = toy_config(data_dir, test_domains=("blue",), algorithm="erm")
  config.probe.enabled, config.probe.batches = True, 2
  tasks.run(config, tmp_path, devices=jax.devices()[:2])
  run = sweep.run_dir(tmp_path, "blue", 0)
  history = json.loads((run / "probe.json").read_text())
  assert list(history) == ["5", "10"]
  tables = history["10"]["attention"][0]
  assert tables["self"] + tables["same_class"] + tables["other_class"] == pytest.approx(1.0)
  # 8 samples of 3 classes, evenly spread: 1/8 on itself.
  assert history["10"]["uniform_attention"]["self"] == pytest.approx(1 / 8)
  for name in ("attention.png", "gradient_share.png"):
    assert pathlib.Path(run / name).stat().st_size > 0
  logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in logged if "probe/attn/same_class" in m] == [5, 10]
