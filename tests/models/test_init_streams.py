"""Paired arms start alike: building the BatchFormer draws nothing from the other modules' stream."""

import pytest
from helpers import load_config

from bf_jax.models.classifier import build_model
from bf_jax.trainer import run_record, train_state


@pytest.mark.parametrize("name", [
    "digits_lt",  # backbone + BatchFormer + head
    "cifar100_lt_ride",  # RIDE: the layer is built amid the experts
    "cifar100_deit_tiny_v2",  # V2: the layers between the blocks
])
def test_bf_on_and_off_share_every_other_modules_initial_parameters(name):
  prints = {}
  for bf in ("off", "on"):
    config = load_config(name, f"bf={bf},smoke")
    shape = (8, 8, 1) if name == "digits_lt" else (8, 8, 3)
    model = build_model(config.model, config.bf, 10, shape, 4, config.seed, axis_name=None)
    prints[bf] = run_record.fingerprints(train_state.split_model(model)[1])
  extra = set(prints["on"]) - set(prints["off"])
  assert extra == {"bfs" if "deit" in name else "bf"}
  assert prints["on"].items() - {(g, prints["on"][g]) for g in extra} == prints["off"].items()

