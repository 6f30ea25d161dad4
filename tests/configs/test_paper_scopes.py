"""Every paper config attends, by default, over the groups the paper's run attended over, and
says where that comes from; ``scope=global`` (or any scope) overrides it."""

import pytest
from helpers import ROOT, config_module

from bf_jax.trainer.config_base import paper_scope

# config -> the samples one attention spanned upstream (docstrings give the sources).
PAPER = {
    "cifar100_lt_balanced_softmax": "global", "imagenet_lt_balanced_softmax_r50": "global",
    "places_lt_balanced_softmax_r152": "global", "cifar100_lt_ldam_drw": "global",
    "cifar100_lt_ride": "global", "imagenet_lt_ride_r50": "64", "inat18_ride_r50": "16",
    "moco_v3_imagenet_r50": "256", "imagenet_deit_small_v2": "64",
    "cifar100_deit_tiny_v2": "64", "cifar100_lt_paco": "global", "fashion_mnist_lt": "global",
    "imagenet_lt_paco_r50": "global",
    **{f"dg_{d}": "global" for d in ("pacs", "vlcs", "office_home", "terra_incognita",
                                     "domain_net")},
    **{f"czsl_{d}_{m}": "global" for d in ("mit_states", "ut_zappos", "cgqa")
       for m in ("cge", "compcos")},
}


def test_every_config_with_a_scope_arg_is_listed():
  with_arg = {p.stem for p in (ROOT / "configs").glob("*.py")
              if "scope" in getattr(config_module(p), "ARGS", {})}
  assert with_arg == set(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_scope_is_the_default_and_global_overrides_it(name):
  module = config_module(ROOT / "configs" / f"{name}.py")
  assert module.get_config().bf.scope == PAPER[name]
  assert module.get_config("scope=global").bf.scope == "global"
  assert module.get_config("scope=device").bf.scope == "device"
  doc = module.__doc__
  assert "scope=paper|global|device|K" in doc
  if PAPER[name] != "global":
    assert f"groups of {PAPER[name]}" in doc


def test_a_smoke_batch_smaller_than_the_paper_group_keeps_grouped_attention():
  assert paper_scope("paper", "64", 16) == "16"
  assert paper_scope("paper", "16", 48) == "16"
  assert paper_scope("paper", "256", 24) == "8"
  assert paper_scope("paper", "global", 16) == "global"
  assert paper_scope("4", "64", 16) == "4"
  module = config_module(ROOT / "configs" / "inat18_ride_r50.py")
  assert module.get_config("smoke").bf.scope == "16"  # smoke batch 16: one group
