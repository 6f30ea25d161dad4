"""``config.bf`` -> the layer's arguments in one place: the same group size and the same
config-named errors for V1 (pooled features), V2 (a ViT's tokens) and the probe."""

import ml_collections
import pytest

from bf_jax.models import bf_config
from bf_jax.models.classifier import build_model
from bf_jax.tasks import base_config


def _bf(**fields) -> ml_collections.ConfigDict:
  bf = base_config().bf
  bf.update(fields)
  return bf


@pytest.mark.parametrize("scope, group", [("global", None), ("device", 8), ("4", 4)])
def test_scope_becomes_one_group_size(scope, group):
  assert bf_config.group_size(_bf(scope=scope), local_batch=8) == group
  kwargs = bf_config.layer_kwargs(_bf(scope=scope, num_heads=2), 16, local_batch=8)
  assert kwargs["group_size"] == group and kwargs["num_heads"] == 2


def test_a_scope_that_does_not_divide_the_batch_is_named():
  with pytest.raises(ValueError, match=r"bf.scope='6'.*--config.bf.scope"):
    bf_config.check_scope(_bf(scope="6"), batch_size=16, n_devices=2)
  bf_config.check_scope(_bf(scope="6", enabled=False), batch_size=16, n_devices=2)


@pytest.mark.parametrize("name, dim", [("mlp", 30), ("deit_tiny", 192)])
def test_a_bad_num_heads_names_the_config_field_for_v1_and_v2(name, dim):
  c = base_config()
  c.model.update(name=name, width=dim, patch=4)
  c.bf.update(enabled=True, num_heads=7, insert_after=(3,) if name != "mlp" else ())
  with pytest.raises(ValueError, match=rf"config.bf.num_heads=7 does not divide .* {dim}; set "
                                       r"--config.bf.num_heads to one of"):
    build_model(c.model, c.bf, 10, (16, 16, 3), 8, seed=0)
