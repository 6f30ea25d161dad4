"""``config.czsl``: closed-world compositional zero-shot learning's own fields; data.name is a
CZSL dataset prepared under data.data_dir (python -m bf_jax.tasks.czsl.data prepare ...). The
task registry adds the block to every config."""

import ml_collections


def czsl() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      model="cge",  # "cge" (graph convolution over attrs/objs/pairs) | "compcos"
      emb_dim=512,  # joint image / pair embedding width
      hidden=4096,  # CGE: GCN hidden width; CompCos: primitive embedding width without vectors
      img_layers=2,  # image embedder MLP depth
      word_vectors="",  # GloVe-style text file for the node / primitive embeddings; "": learned
      temperature=0.05,  # CompCos: cosine logits / temperature
      epochs=0,  # > 0: total_steps = epochs x training images / batch_size, set at the start
      eval_every_epochs=1))  # with epochs > 0: eval_every_steps in epochs


BLOCKS = {"czsl": czsl}
