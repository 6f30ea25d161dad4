"""Benchmarks: ``python -m bf_jax.bench`` times jitted train and eval steps over a grid of
backbone x batch x BatchFormer on/off x scope, and (when torch is importable) the same train step
in PyTorch, side by side. Figures, never pass/fail: see README "Performance"."""
