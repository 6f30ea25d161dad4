"""C-GQA closed-world CZSL: CompCos, + BatchFormer.

ResNet-18 (ImageNet weights, fine-tuned), BatchFormer on the image feature (two streams), the
recipe of bf_jax/tasks/czsl/recipe.py. Prints val/test AUC, best HM, best seen/unseen, attribute and
object accuracy each evaluation; reports test at the best val AUC (czsl_result.json,
seen_unseen.png).

  python tools/czsl_metadata_to_json.py data/cgqa/metadata_compositional-split-natural.t7
  python -m bf_jax.tasks.czsl.data prepare --dataset cgqa --root data/cgqa --out ~/czsl_data
  W=$HOME/resnet18.npz  # ImageNet ResNet-18 weights, a torchvision state_dict .npz
  python -m bf_jax.main --config configs/czsl_cgqa_compcos.py:bf=off,weights=$W \\
    --workdir runs/czsl_cgqa_compcos
  python -m bf_jax.main --config configs/czsl_cgqa_compcos.py:weights=$W \\
    --workdir runs/czsl_cgqa_compcos_bf

The converter needs torch (once); bf_jax does not. ``weights``: ImageNet ResNet-18 as a torchvision
state_dict .npz (docs/classify.md, "ImageNet weights"); ``word_vectors``: a GloVe-style text
file for the attribute/object embeddings (learned from scratch without one).
Hardware: one GPU. No result measured yet.
The paper reports no CompCos number; this config is the second compatibility model.

Args: bf=on|off, smoke, seed=N, bf_lr=X (BatchFormer lr multiplier, default 0.02), weights=PATH,
word_vectors=PATH, data_dir=DIR,
scope=paper|global|device|K (paper, the default: the whole batch, as the czsl code's one GPU ran
it).
"""

from bf_jax.tasks.czsl.recipe import ARGS, czsl_config  # noqa: F401 (ARGS: the documented args)


def get_config(arg: str | None = None):
  return czsl_config("cgqa", "compcos", arg)
