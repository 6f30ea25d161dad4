"""TerraIncognita domain generalization: leave-one-domain-out, SWAD (+ BatchFormer), ResNet-18.

Domains: location_38, location_43, location_46, location_100; 10 classes. Each domain in turn is
the test domain; the others train (32 images each per step, 80% in-splits) and their 20% out-splits
select the model. SWAD's DomainBed recipe (5,000 steps, validation every 200, Adam 5e-5; details in
bf_jax/tasks/dg/recipe.py). Prints and writes (results.md / results.json) per-test-domain accuracy, mean
+- std over trial seeds.

  python -m bf_jax.tasks.dg.domains prepare --dataset terra_incognita --root /data/terra_incognita \\
    --out ~/dg_data
  python -m bf_jax.main --config configs/dg_terra_incognita.py:weights=$HOME/resnet18.npz \\
    --workdir runs/dg_terra_incognita_bf
  python -m bf_jax.main --config configs/dg_terra_incognita.py:bf=off,weights=$HOME/resnet18.npz \\
    --workdir runs/dg_terra_incognita
  python -m bf_jax.tasks.dg.sweep runs/dg_terra_incognita runs/dg_terra_incognita_bf   # the two tables

``weights``: ImageNet ResNet weights as a torchvision state_dict .npz (docs/classify.md, "ImageNet
weights"); without it the ResNet trains from scratch (runs, but far below the paper).
Hardware: one GPU (add --config.model.dtype=bfloat16 on A100/H100). No result measured yet.
Paper (BatchFormer, CVPR 2022, SWAD + ResNet-18, mean over test domains and 3 seeds; the
paper's numbers, not ours): 42.1 -> 44.8 without -> with BatchFormer.

Args: bf=on|off, smoke, arch=resnet18|resnet50, algorithm=swad|erm, seeds=N, bf_lr=X
(BatchFormer lr multiplier; default 1, 0.1 for resnet50), weights=PATH, data_dir=DIR,
scope=paper|global|device|K (paper, the default: the whole batch, as SWAD's one GPU ran it).
"""

from bf_jax.tasks.dg.recipe import ARGS, domainbed_config  # noqa: F401 (ARGS: the documented args)


def get_config(arg: str | None = None):
  return domainbed_config("terra_incognita", arg)
