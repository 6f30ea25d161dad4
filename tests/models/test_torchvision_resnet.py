"""ImageNet weights from a torchvision state_dict: same features as torch, loud mismatches."""

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from helpers import ROOT, load_config

from bf_jax import tasks
from bf_jax.models.resnet import build_resnet
from bf_jax.models.torchvision_resnet import load_npz, load_torchvision_resnet
from bf_jax.tasks import classify
from bf_jax.trainer import train_state

GOLDEN = ROOT / "tests" / "golden" / "torchvision_resnet.npz"  # tools/make_resnet_golden.py
WIDTH = {"resnet18": 1 / 8, "resnet50": 1 / 16}  # the golden models' reduced widths


def _golden(case):
  data = np.load(GOLDEN)
  weights = {k[len(f"{case}/w/"):]: data[k] for k in data.files if k.startswith(f"{case}/w/")}
  return weights, data[f"{case}/x"], data[f"{case}/y"]


@pytest.mark.parametrize("case", ["resnet18", "resnet50"])
def test_imported_backbone_gives_torchs_features(case):
  weights, x_nchw, y = _golden(case)
  model = build_resnet(case, 3, width_mult=WIDTH[case], axis_name=None, rngs=nnx.Rngs(0))
  graphdef, params, stats, other = train_state.split_model(model)
  params, stats = load_torchvision_resnet(case, params, stats, weights)
  model = nnx.merge(graphdef, params, stats, other)
  # Jitted: op by op, a ResNet-50 forward compiles every op of its shapes afresh.
  feats = nnx.jit(lambda m, x: m(x, train=False))(model, np.transpose(x_nchw, (0, 2, 3, 1)))
  np.testing.assert_allclose(feats, y, rtol=1e-4, atol=1e-4)


def test_mismatched_files_are_refused_by_name():
  weights, _, _ = _golden("resnet18")
  model = nnx.eval_shape(lambda: build_resnet("resnet50", 3, width_mult=1 / 16, axis_name=None,
                                              rngs=nnx.Rngs(0)))
  _, params, stats, _ = train_state.split_model(model)
  with pytest.raises(ValueError, match=r"'layer1.0.conv1.weight' has shape \(8, 64, 3, 3\)"):
    load_torchvision_resnet("resnet50", params, stats, weights)  # a ResNet-18 file
  model = nnx.eval_shape(lambda: build_resnet("resnet18", 3, axis_name=None, rngs=nnx.Rngs(0)))
  _, params, stats, _ = train_state.split_model(model)
  with pytest.raises(ValueError, match="'layer1.0.conv1.weight' has shape"):
    load_torchvision_resnet("resnet18", params, stats, weights)  # full width vs the 1/8 file
  small = nnx.eval_shape(lambda: build_resnet("resnet18", 3, width_mult=1 / 8, axis_name=None,
                                              rngs=nnx.Rngs(0)))
  _, params, stats, _ = train_state.split_model(small)
  with pytest.raises(ValueError, match="has no 'layer2.0.downsample.0.weight'"):
    load_torchvision_resnet("resnet18", params, stats, {
        k: v for k, v in weights.items() if k != "layer2.0.downsample.0.weight"})
  with pytest.raises(ValueError, match="no place for.*layer5.0.conv1.weight"):
    load_torchvision_resnet("resnet18", params, stats,
                            {**weights, "layer5.0.conv1.weight": np.zeros((1, 1, 1, 1))})
  with pytest.raises(ValueError, match="not model.name='resnet32'"):
    load_torchvision_resnet("resnet32", params, stats, weights)


def test_config_pretrained_initializes_the_backbone(tmp_path):
  weights, _, _ = _golden("resnet18")
  np.savez(tmp_path / "r18.npz", **weights)
  config = load_config("cifar100_lt_balanced_softmax", "smoke")
  config.model.update(name="resnet18", width_mult=1 / 8)
  config.init.update(pretrained=str(tmp_path / "missing.npz"))
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    load_npz(config.init.pretrained)
  config.init.update(pretrained=str(tmp_path / "r18.npz"), freeze_backbone=True)
  config.total_steps, config.eval_batch_size = 1, 64
  config.data.update(imbalance=1.0, n_max=0)
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    classify.run(config, tmp_path / "run", devices=jax.devices()[:1])
  manager = ocp.CheckpointManager(tmp_path / "run" / "checkpoints")
  state = manager.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  chex.assert_trees_all_close(state["params"]["backbone"]["stem"]["conv"]["kernel"],
                              weights["conv1.weight"].transpose(2, 3, 1, 0))
  chex.assert_trees_all_close(state["stats"]["backbone"]["stages"]["blocks"]["7"]["bn2"]["var"],
                              weights["layer4.1.bn2.running_var"])
  config.model.experts = 3
  with pytest.raises(ValueError, match="init.pretrained"):
    tasks.validate(config)


def test_imported_weights_fill_the_scanned_layout_too(tmp_path):
  weights, x_nchw, y = _golden("resnet50")
  np.savez(tmp_path / "r50.npz", **weights)
  config = load_config("cifar100_lt_balanced_softmax", "smoke")
  config.model.update(name="resnet50", width_mult=WIDTH["resnet50"], scan_layers=True)
  config.init.pretrained = str(tmp_path / "r50.npz")
  model = build_resnet("resnet50", 3, width_mult=WIDTH["resnet50"], axis_name=None,
                       rngs=nnx.Rngs(0), scan_layers=True)
  graphdef, params, stats, other = train_state.split_model(model)
  params, stats = {"backbone": params}, {"backbone": stats}
  train_state.load_pretrained(config, params, stats)
  assert "blocks" not in params["backbone"]["stages"]  # still scanned, every block filled
  model = nnx.merge(graphdef, params["backbone"], stats["backbone"], other)
  feats = nnx.jit(lambda m, x: m(x, train=False))(model, np.transpose(x_nchw, (0, 2, 3, 1)))
  np.testing.assert_allclose(feats, y, rtol=1e-4, atol=1e-4)
