"""Domain generalization (``task="dg"``): DomainBed-style leave-one-domain-out with ERM and SWAD.

``data.py``: splits and per-domain balanced batches; ``run.py``: one (test domain, trial seed)
run; ``sweep.py``: every run of a config, and the result table.
"""
