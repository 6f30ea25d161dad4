"""``config.dg``: DomainBed-style leave-one-domain-out's own fields; data.name is a DG dataset
prepared under data.data_dir (python -m bf_jax.tasks.dg.domains prepare ...). The task registry
adds the block to every config."""

import ml_collections


def dg() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      test_domains=(),  # held-out domains, one run each; (): every domain of the dataset
      trial_seeds=(0,),  # one run per (test domain, trial seed): split, init, data order
      holdout_fraction=0.2,  # of each domain, held out for model selection (and test_out)
      batch_per_domain=32,  # batch_size must be this x (number of domains - 1)
      algorithm="swad",  # "erm" | "swad" (ERM's selections are reported in both)
      swad_n_converge=3, swad_n_tolerance=6, swad_tolerance_ratio=0.3))


BLOCKS = {"dg": dg}
