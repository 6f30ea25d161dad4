"""Benchmarks: ``python -m bf_jax.bench`` times jitted train and eval steps over a grid of
backbone x batch x BatchFormer on/off x scope, and (when a Python with torch is given) the same
train step in PyTorch, side by side. Figures, never pass/fail: see docs/performance.md.

``torch_ref.py`` runs as a script under another interpreter, with this folder first on
``sys.path``: no module here may share a name with the standard library (``profile`` did, and
broke torch's import of cProfile).
"""
