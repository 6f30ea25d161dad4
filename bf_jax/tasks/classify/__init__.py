"""``task="classify"``: supervised (long-tailed) classification with BatchFormer.

``train.py``: the run (train, evaluate, select, per-class accuracy); ``model.py``: the model
and state a config builds; ``metrics.py``: the many/medium/few-shot accuracies; ``checks.py``:
the config checks; ``probe.py``: what the trained layer attends to (at each evaluation, and
``inspect`` on a checkpoint).
"""

from bf_jax.tasks.classify.checks import validate
from bf_jax.tasks.classify.probe import inspect
from bf_jax.tasks.classify.train import run

__all__ = ["validate", "run", "inspect"]
