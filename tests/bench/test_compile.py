"""bf_jax.bench.compile's table (each scanned row against its own unrolled row) and its
config overrides."""

import pytest

from bf_jax.bench import compile as compile_bench
from bf_jax.bench import memory


def test_the_table_sets_each_scanned_row_against_its_unrolled_row():
  row = dict(case="c.py:bf=on", batch=8, model="deit_small", insert_after=(8,))
  rows = [dict(row, scan=False, trace_s=10.0, compile_s=60.0, step_s=2.0),
          dict(row, scan=True, trace_s=5.0, compile_s=20.0, step_s=2.1)]
  lines = compile_bench.table(rows).splitlines()
  assert lines[2].startswith("| c.py:bf=on (deit_small, V2 after (8,), batch 8) | unrolled |")
  assert lines[3].endswith("| scanned | 5.0 | 20.0 | 0.33 | 2.100 | 1.05 |")


def test_sets_change_the_config_and_name_a_field_it_lacks():
  c = memory.load_config("imagenet_deit_small_v2.py", "bf=on",
                         ("data.mixup=0", "bf.insert_after=(3, 6)", "model.name=deit_tiny"))
  assert (c.data.mixup, tuple(c.bf.insert_after), c.model.name) == (0, (3, 6), "deit_tiny")
  with pytest.raises(ValueError, match=r"'data.mixups=0': the config has no field data.mixups"):
    memory.load_config("imagenet_deit_small_v2.py", "bf=on", ("data.mixups=0",))
  with pytest.raises(ValueError, match=r"'data.mixup' must be field=value"):
    memory.load_config("imagenet_deit_small_v2.py", "bf=on", ("data.mixup",))
