"""What a run leaves for a paired comparison: fingerprints of its initial parameters."""

import jax.numpy as jnp

from bf_jax.trainer import run_record


def test_fingerprints_follow_the_values():
  a = {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.zeros(2)}}
  b = {"backbone": {"w": jnp.ones(3).at[1].set(1.5)}, "head": {"w": jnp.zeros(2)}}
  pa, pb = run_record.fingerprints(a), run_record.fingerprints(b)
  assert pa["head"] == pb["head"] and pa["backbone"] != pb["backbone"]
  assert run_record.fingerprints({"backbone": {"w": jnp.ones(3)}})["backbone"] == pa["backbone"]
