"""Shared test helpers: loading config files and reading run logs."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).parents[1]


def load_config(name: str, arg: str | None = None):
  """configs/<name>.py:get_config(arg), unlocked so tests can edit fields."""
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def config_module(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def read_metrics(workdir) -> list[dict]:
  return [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def train_losses(workdir) -> list[float]:
  return [m["train/loss"] for m in read_metrics(workdir) if "train/loss" in m]
