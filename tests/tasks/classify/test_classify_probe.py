"""The classifier's probe end to end: files and scalars at each eval, the same on 1 and 8
devices, ``python -m bf_jax.probe`` on the checkpoint, and its loud errors."""

import json

import jax
import numpy as np
import pytest
from helpers import load_config, read_metrics

from bf_jax import probe as probe_cli
from bf_jax.tasks import classify
from bf_jax.tasks.classify import model, probe
from bf_jax.trainer import feed


def _config(scope="global", bf="on"):
  config = load_config("digits_lt", f"smoke,bf={bf}")
  config.probe.enabled, config.probe.batches, config.bf.scope = True, 2, scope
  return config


def _flat(tree, prefix=""):
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
  if isinstance(tree, list):
    return {k: v for i, sub in enumerate(tree) for k, v in _flat(sub, f"{prefix}{i}.").items()}
  return {prefix: tree}


def test_probe_at_each_eval_and_from_the_checkpoint(tmp_path, capsys):
  config = _config()
  classify.run(config, tmp_path / "run")
  run = tmp_path / "run"
  history = json.loads((run / "probe.json").read_text())
  assert list(history) == ["15", "30"]  # eval_every_steps 15 in the smoke variant
  rec = history["30"]
  assert rec["probe_batches"] == 2 and rec["scope"] == "global"
  for row in rec["attention"][0]["group_to_group"]:
    assert sum(row) == pytest.approx(1.0, abs=1e-5)
  for row in rec["gradient_share"]:
    assert sum(row) == pytest.approx(1.0, abs=1e-5)
  tables = rec["attention"][0]
  assert tables["self"] + tables["same_class"] + tables["other_class"] == pytest.approx(1.0)
  assert (run / "attention.png").stat().st_size > 0
  assert (run / "gradient_share.png").stat().st_size > 0
  logged = [m for m in read_metrics(run) if "probe/attn/few_to_many" in m]
  assert [m["step"] for m in logged] == [15, 30]
  assert logged[-1]["probe/grad/few_to_many"] == pytest.approx(rec["gradient_share"][2][0])
  # The CLI on the newest checkpoint (step 30) finds what the run found at step 30.
  probe_cli.main(["--workdir", str(run), "--out", str(tmp_path / "out")])
  assert "| queries \\ keys | many | medium | few |" in capsys.readouterr().out
  again = json.loads((tmp_path / "out" / "probe.json").read_text())["30"]
  want, got = _flat(rec), _flat(again)
  assert got.keys() == want.keys()
  for key, value in want.items():
    assert got[key] == (value if not isinstance(value, float) else pytest.approx(value, abs=1e-5))
  # Without --out it writes beside what training wrote, never over it.
  before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
  probe_cli.main(["--workdir", str(run)])
  assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
  assert (run / probe_cli.OUT / "probe.json").exists()


@pytest.mark.parametrize("scope", ["global", "16"])
def test_probe_is_the_same_on_one_and_eight_devices(scope):
  """Scope 16 on 8 devices of 8 samples: groups straddle devices; the probe gathers them."""
  config = _config(scope)
  records = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh, dataset = feed.prepare(config, devices)
    parts = model.build(config, mesh, dataset)
    records.append(_flat(probe.make_prober(config, dataset, parts, mesh, "unused")
                         .measure(parts.state, 0)[0]))
  one, eight = records
  for key, value in one.items():
    if isinstance(value, float):
      np.testing.assert_allclose(eight[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    else:
      assert eight[key] == value, key
  if scope == "16":  # within groups of 16 a query sees 16 keys: 1/16 on itself if spread evenly
    assert one["uniform_attention.self."] == pytest.approx(1 / 16)


def test_probe_off_without_batchformer_and_loud_errors(tmp_path):
  classify.run(_config(bf="off"), tmp_path / "off")
  assert not (tmp_path / "off" / "probe.json").exists()  # nothing to probe, nothing spent
  with pytest.raises(ValueError, match="trained without BatchFormer"):
    probe_cli.inspect(tmp_path / "off")
  with pytest.raises(FileNotFoundError, match="holds no config.json"):
    probe_cli.inspect(tmp_path)
  ride = load_config("cifar100_lt_ride", "smoke")
  ride.probe.enabled = True
  with pytest.raises(ValueError, match="probe.enabled"):
    classify.validate(ride)


def test_turning_the_probe_on_at_a_resume_is_allowed(tmp_path):
  """The probe does not touch training: a resumed run may switch it on without resume_changes."""
  config = load_config("digits_lt", "smoke")
  config.eval_every_steps = 0
  classify.run(config, tmp_path, stop_at=10)  # checkpoint at step 10, trained without the probe
  config.probe.enabled = True
  assert classify.run(config, tmp_path)["step"] == config.total_steps
  assert list(json.loads((tmp_path / "probe.json").read_text())) == [str(config.total_steps)]
