"""``task="dg"``: DomainBed-style leave-one-domain-out domain generalization, ERM and SWAD.

``domains.py``: the datasets' image folders -> prepared records; ``data.py``: in/out splits and
per-domain balanced batches; ``train.py``: one (test domain, trial seed) run; ``swad.py``: SWAD's
weight averaging; ``sweep.py``: every run of a config, and the result table; ``digits.py``: the
rotated-digits CPU set; ``recipe.py``: the DomainBed configs; ``checks.py``: the config checks.
"""

from bf_jax.tasks.dg.checks import validate
from bf_jax.tasks.dg.sweep import run

__all__ = ["validate", "run"]
