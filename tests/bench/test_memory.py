"""The memory bench's forced attention modes and its crossover table (no train step compiled)."""

import pytest
from flax import nnx

from bf_jax import BatchFormer
from bf_jax.bench import memory
from bf_jax.layer import attention


def test_force_attention_sets_every_layer():
  bfs = [BatchFormer(384, num_layers=2, rngs=nnx.Rngs(0)), BatchFormer(384, rngs=nnx.Rngs(1))]
  memory.force_attention(bfs, "whole", 512, 4096)
  assert [layer.query_chunk for bf in bfs for layer in bf.layers] == [0, 0, 0]
  memory.force_attention(bfs, "chunks", 512, 4096)
  # The rule without remat: at most 512 x 384 / (4 x 4096) = 12 queries, a divisor of 512.
  assert [layer.query_chunk for bf in bfs for layer in bf.layers] == [8, 8, 8]
  with pytest.raises(ValueError, match="attention='fused'"):
    memory.force_attention(bfs, "fused", 512, 4096)


def test_auto_choice_follows_the_layer_rule():
  bf = BatchFormer(384, rngs=nnx.Rngs(0))
  assert memory.auto_choice(bf, 128, 1024) == "whole"  # 4 x 1024 / 384 = 10.7
  assert memory.auto_choice(bf, 512, 4096) == "chunks of 8"  # 42.7
  assert 4 * 2304 / 384 == attention.REMAT_WHOLE_UP_TO
  assert memory.auto_choice(bf, 288, 2304) == "whole"


def test_crossover_table_pairs_whole_and_chunks():
  row = lambda mode, batch, mib, auto: {
      "case": f"deit.py:bf=on,scope=global batch {batch} ({mode} attention)", "batch": batch,
      "devices": 8, "temp_mib": mib, "keys_per_dim": batch * 4 / 384, "auto": auto,
      "attention": mode}
  rows = [row("whole", 1024, 100.0, "whole"), row("chunks", 1024, 120.0, "whole"),
          row("whole", 4096, 900.0, "chunks of 8"), row("chunks", 4096, 700.0, "chunks of 8")]
  lines = memory.crossover_table(rows).splitlines()
  assert len(lines) == 4
  assert lines[2] == "| deit.py | 1024 / 8 | 10.7 | 100.0 | 120.0 | whole | whole |"
  assert lines[3] == "| deit.py | 4096 / 8 | 42.7 | 900.0 | 700.0 | chunks | chunks of 8 |"


def test_table_divides_by_the_plain_step_and_the_two_streams():
  row = lambda case, mib, gflops, bf=True, streams=False: {
      "case": f"deit.py:{case}", "model": "deit_tiny", "dtype": "float32", "batch": 256,
      "devices": 8, "bf": bf, "streams_only": streams, "temp_mib": mib, "argument_mib": 1.0,
      "gflops": gflops}
  rows = [row("bf=off", 100.0, 10.0, bf=False), row("bf=on (layers as identity)", 200.0, 18.0,
                                                     streams=True),
          row("bf=on", 220.0, 20.0), row("bf=on,remat=streams", 110.0, 26.0),
          row("bf=off,remat=all", 40.0, 13.0, bf=False)]
  lines = memory.table(rows).splitlines()[2:]
  assert lines[0].endswith("| 100.0 | - | - | 1.0 | - |")
  assert lines[2].endswith("| 220.0 | 2.20 | 1.10 | 1.0 | 2.00 |")
  assert lines[3].endswith("| 110.0 | 1.10 | 0.55 | 1.0 | 2.60 |")
  assert lines[4].endswith("| 40.0 | 0.40 | - | 1.0 | 1.30 |")
