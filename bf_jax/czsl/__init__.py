"""Compositional zero-shot learning (closed world): data, models, evaluation.

``metrics.py``: the closed-world evaluation of the reference czsl codebase (AUC of the seen/unseen
accuracy curve over calibration biases, best HM, best seen/unseen, attribute/object accuracy) and a
``Pairs`` helper for the attribute/object/pair bookkeeping.
"""
