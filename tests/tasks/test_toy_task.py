"""A new task, added as docs/layout.md ("Where does my change go") says, trains and resumes.

The test writes a tiny task package outside bf_jax (``toytask``: ``__init__.py`` with lazy
``validate``/``run``, ``config.py`` with ``BLOCKS``, ``checks.py``, and as ``train.py`` the
page's own python block, as written), registers it in the task registry and its block in the
shared schema, and runs it through ``bf_jax.tasks.run`` on the embedded digits. If the page's
recipe stops working (the Run, train_state, supervised or feed API moved), this fails before a
real new task would.
"""

import importlib
import json
import re
import sys
import textwrap

import jax
import orbax.checkpoint as ocp
import pytest
from helpers import ROOT

from bf_jax import tasks
from bf_jax.trainer import config_base

PACKAGE = "toytask"

# The package as the page's recipe writes it; only the names differ from a real task's
# (a real one lives in bf_jax/tasks/<name>/ and imports itself as bf_jax.tasks.<name>).
# train.py is the page's python block, read by its_train_py below.
SOURCES = {
    "__init__.py": '''
        """task="toy": the smallest task the registry can run (the recipe of docs/layout.md)."""

        from __future__ import annotations


        def validate(config) -> None:
          # Imported on call, so that looking the task up loads none of its code.
          from toytask.checks import validate as validate_
          validate_(config)


        def run(config, workdir, devices=None, stop_at=None):
          from toytask.train import run as run_
          return run_(config, workdir, devices, stop_at)
        ''',
    "config.py": '''
        """config.toy: the toy task's own field; the registry adds the block to every config."""

        import ml_collections


        def toy() -> ml_collections.ConfigDict:
          return ml_collections.ConfigDict(dict(
              min_acc=0.0))  # only checked (0..1): the block's way into config.json is tested


        BLOCKS = {"toy": toy}
        ''',
    "checks.py": '''
        """The toy task's config checks: the shared ones, then its own field."""

        from bf_jax.trainer import config_check

        ACCEPTS = config_check.Accepts(datasets=("digits",))


        def validate(cfg) -> None:
          config_check.validate(cfg, ACCEPTS)
          config_check.check_num(cfg, "toy.min_acc", 0.0, 1.0)
        ''',
}


def its_train_py() -> str:
  """The one python block of docs/layout.md: the sketch of a task's train.py."""
  blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "layout.md").read_text(),
                      flags=re.DOTALL | re.MULTILINE)
  assert len(blocks) == 1, "docs/layout.md should hold one python block, train.py's sketch"
  return blocks[0]


@pytest.fixture
def toy_task(tmp_path, monkeypatch):
  """Writes the package, registers it as task "toy" and its block; undone after the test."""
  root = tmp_path / "packages"
  (root / PACKAGE).mkdir(parents=True)
  for name, source in SOURCES.items():
    (root / PACKAGE / name).write_text(textwrap.dedent(source).lstrip())
  (root / PACKAGE / "train.py").write_text(its_train_py())
  monkeypatch.syspath_prepend(str(root))
  # The shared schema keeps its registered tasks at module level: copies, so the toy block
  # leaves no trace in the configs of the tests that follow.
  monkeypatch.setattr(config_base, "_BLOCKS", dict(config_base._BLOCKS))
  monkeypatch.setattr(config_base, "_TASKS", list(config_base._TASKS))
  monkeypatch.setitem(tasks.REGISTRY, "toy", PACKAGE)
  # What bf_jax/tasks/__init__.py does for every entry of REGISTRY at import.
  config_base.add_task("toy", importlib.import_module(f"{PACKAGE}.config").BLOCKS)
  yield
  for module in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
    del sys.modules[module]  # a later import must not find the deleted tmp_path's files


def _toy_config():
  config = tasks.base_config()
  config.task = "toy"
  config.data.name = "digits"
  config.model.name, config.model.width, config.model.depth = "mlp", 16, 1
  config.batch_size, config.eval_batch_size = 16, 64
  config.total_steps, config.eval_every_steps, config.log_every_steps = 4, 2, 1
  config.ckpt.every_steps = 2
  config.toy.min_acc = 0.05
  return config


def _history(workdir) -> list[dict]:
  lines = (workdir / "config_history.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


def test_the_toy_block_reaches_every_config_and_its_checks(toy_task):
  config = _toy_config()
  assert tasks.base_config().toy.min_acc == 0.0  # the block's default, in the shared schema
  tasks.validate(config)  # the registry finds the package and its checks
  config.toy.min_acc = 2.0
  with pytest.raises(ValueError, match=r"config\.toy\.min_acc=2\.0"):
    tasks.validate(config)


def test_a_toy_task_trains_records_and_resumes_through_the_registry(toy_task, tmp_path):
  config = _toy_config()
  workdir = tmp_path / "run"
  result = tasks.run(config, workdir, devices=jax.devices())
  assert result["step"] == 4 and not result["preempted"]
  assert result["eval_step"] == 4 and 0.0 <= result["acc"] <= 1.0
  for name in ("config.json", "result.json", "init.json", "metrics.jsonl"):
    assert (workdir / name).is_file(), name
  assert json.loads((workdir / "config.json").read_text())["toy"] == {"min_acc": 0.05}
  assert json.loads((workdir / "result.json").read_text())["step"] == 4
  assert ocp.CheckpointManager(workdir / "checkpoints").latest_step() == 4
  assert [h["start_step"] for h in _history(workdir)] == [0]

  again = tasks.run(config, workdir, devices=jax.devices())  # the run's workdir resumes
  assert again["step"] == 4 and again["acc"] == pytest.approx(result["acc"])
  assert [h["start_step"] for h in _history(workdir)] == [0, 4]
