"""PaCo (Parametric Contrastive Learning, Cui et al. ICCV 2021) + BatchFormer, inside the
classifier task: the test-time model, evaluation and model selection are the classifier's;
only the train step (``steps.py``), its state (the momentum encoder, ``model.py``; the key
queue, ``queue.py``) and the loss (``loss.py``) are PaCo's. On with ``config.paco.enabled``.
"""
