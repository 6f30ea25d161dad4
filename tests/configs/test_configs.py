"""Every config file loads and validates, with and without each documented arg."""

import pathlib

import pytest
from helpers import ROOT, config_module

from bf_jax import tasks
from bf_jax.tasks import base_config
from bf_jax.trainer.config_base import parse_arg

CONFIGS = sorted((ROOT / "configs").glob("*.py"))


def _arg_variants(args: dict) -> list[str | None]:
  variants = [None, ""]
  for key, default in args.items():
    if isinstance(default, bool):
      variants += [f"{key}={'off' if default else 'on'}", f"{key}={'on' if default else 'off'}"]
      variants.append(key)  # bare name: True
    else:
      variants.append(f"{key}={default}")
  return variants


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_with_each_documented_arg(path: pathlib.Path):
  module = config_module(path)
  assert module.__doc__ and "python -m bf_jax.main --config configs/" in module.__doc__
  for arg in _arg_variants(module.ARGS):
    config = module.get_config(arg)
    tasks.validate(config)
    # Same schema everywhere: tools and sweeps rely on these fields.
    assert set(config.keys()) == set(base_config().keys()), (path.stem, arg)
    for group in ("bf", "data", "model", "optim", "loss", "ckpt", "init"):
      assert set(config[group].keys()) == set(base_config()[group].keys()), (path.stem, group)
  with pytest.raises(ValueError, match="unknown"):
    module.get_config("no_such_arg=1")


def test_parse_arg_types_and_errors():
  arg = parse_arg("bf=off,seed=3,smoke,imbalance=10", bf=True, seed=0, smoke=False, imbalance=50.0)
  assert (arg.bf, arg.seed, arg.smoke, arg.imbalance) == (False, 3, True, 10.0)
  with pytest.raises(ValueError, match="seed='x' is not a int"):
    parse_arg("seed=x", seed=0)
  with pytest.raises(ValueError, match="bf='maybe' must be on/off"):
    parse_arg("bf=maybe", bf=True)
