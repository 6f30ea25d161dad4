"""optim.ema_decay: the weights' EMA follows d * ema + (1 - d) * params after every step, is
checkpointed, and is evaluated alongside (eval_ema/acc)."""

import jax
import numpy as np
import orbax.checkpoint as ocp
from helpers import load_config, read_metrics

from bf_jax.tasks import classify


def test_ema_follows_the_params_and_is_evaluated(tmp_path, monkeypatch):
  config = load_config("digits_lt", "smoke")
  config.optim.ema_decay = 0.6
  config.total_steps, config.ckpt.every_steps = 4, 1
  result = classify.run(config, tmp_path)
  assert 0.0 <= result["ema_acc"] <= 1.0
  assert any("eval_ema/acc" in m for m in read_metrics(tmp_path))
  # Replay the recurrence from the per-step checkpoints (every step is saved, keep 2: the
  # last two), then check step 4's EMA against step 3's EMA and step 4's params.
  manager = ocp.CheckpointManager(tmp_path / "checkpoints")
  assert manager.all_steps() == [3, 4]
  restore = lambda s: manager.restore(s, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  s3, s4 = restore(3), restore(4)
  expected = jax.tree.map(lambda e, p: 0.6 * e + 0.4 * p, s3["ema"], s4["params"])
  for got, want in zip(jax.tree.leaves(s4["ema"]), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(s4["ema"]),
                                                 jax.tree.leaves(s4["params"]))]
  assert any(moved)  # the EMA lags the params
