"""Decoupled second stage: weights from a first run, frozen backbone, class-balanced sampling."""

import chex
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import load_config

from bf_jax.data import pipeline
from bf_jax.data.sources import ArraySource
from bf_jax.tasks import classify


def _state(workdir):
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  return mngr.restore(mngr.latest_step(),
                      args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def test_second_stage_keeps_the_first_stage_backbone_fixed(tmp_path):
  stage1 = load_config("digits_lt", "smoke,bf=off")
  stage1.model.update(name="cnn", width=8)
  stage1.total_steps, stage1.eval_every_steps = 3, 0
  classify.run(stage1, tmp_path / "s1")

  stage2 = load_config("digits_lt", "smoke")
  stage2.model.update(name="cnn", width=8)
  stage2.total_steps, stage2.eval_every_steps, stage2.seed = 3, 0, 7
  stage2.init.update(from_workdir=str(tmp_path / "s1"), freeze_backbone=True)
  stage2.data.sampler = "class_balanced"
  classify.run(stage2, tmp_path / "s2")
  s1, s2 = _state(tmp_path / "s1"), _state(tmp_path / "s2")
  for kind in ("params", "stats"):  # backbone and its BatchNorm statistics: untouched
    chex.assert_trees_all_equal(s2[kind]["backbone"], s1[kind]["backbone"])
  assert not np.allclose(s1["params"]["head"]["kernel"], s2["params"]["head"]["kernel"])
  assert "bf" in s2["params"] and "bf" not in s1["params"]


def test_init_from_a_workdir_without_checkpoint_is_a_clear_error(tmp_path):
  config = load_config("digits_lt", "smoke")
  config.init.from_workdir = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    classify.run(config, tmp_path / "run")


def test_class_balanced_sampler_draws_classes_uniformly():
  labels = np.repeat(np.arange(5), [100, 50, 20, 5, 1])
  source = ArraySource(np.zeros((len(labels), 2, 2, 1), np.float32), labels)
  prep = pipeline.Preprocess((0.0,), (1.0,), 1.0)
  it = pipeline.train_batches(source, np.arange(len(labels)), 100, prep, 5, seed=0,
                              start_step=0, process_index=0, process_count=1,
                              sampler="class_balanced", labels=labels)
  drawn = np.concatenate([next(it)["label"] for _ in range(20)])
  counts = np.bincount(drawn, minlength=5)
  assert counts.min() > 300 and counts.max() < 500, counts  # 2000 draws, 400 expected each
  again = pipeline.train_batches(source, np.arange(len(labels)), 100, prep, 5, seed=0,
                                 start_step=3, process_index=0, process_count=1,
                                 sampler="class_balanced", labels=labels)
  np.testing.assert_array_equal(next(again)["label"], drawn[300:400])  # resumes by step
