"""``task="czsl"``: closed-world compositional zero-shot learning (CGE, CompCos) + BatchFormer.

``data.py``: the czsl layout -> prepared records; ``model.py``: the CGE and CompCos heads;
``train.py``: the run; ``steps.py``: the pair-score step; ``metrics.py``: the closed-world
evaluation of the reference czsl codebase (AUC of the seen/unseen accuracy curve over calibration
biases, best HM, best seen/unseen, attribute/object accuracy) and ``Pairs`` for the
attribute/object/pair bookkeeping; ``digits.py``: the colored-digits CPU set; ``recipe.py``: the
paper's configs; ``checks.py``: the config checks.
"""

from bf_jax.tasks.czsl.checks import validate
from bf_jax.tasks.czsl.train import run

__all__ = ["validate", "run"]
