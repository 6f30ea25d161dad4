"""Runs every test on 8 forced CPU devices; must act before JAX starts a backend."""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

assert jax.device_count() == 8, f"expected 8 forced CPU devices, got {jax.devices()}"


import pytest  # noqa: E402


@pytest.fixture
def fast_compile():
  """For tests of a few tiny steps, where XLA's optimization passes cost more compile time than
  they save (the 1-vs-8-device training test: 48 s -> 28 s). Values are the same up to float
  rounding; comparisons in a test run under one setting."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)
