"""The benchmark runs, and BatchFormer's inference cost is exactly zero (same compiled program)."""

import json

import numpy as np
import pytest

from bf_jax.bench import __main__ as bench
from bf_jax.bench.jax_steps import Case, build, compiled_text, eval_programs_equal


@pytest.mark.xla_optimized  # the claim is about the program XLA optimizes
def test_eval_program_is_the_same_with_and_without_batchformer():
  assert eval_programs_equal("mlp", 64)
  # The comparison can tell programs apart: the train steps do differ.
  texts = []
  for bf in (False, True):
    train_step, _, state, batch, _ = build(Case("mlp", 64, bf))
    texts.append(compiled_text(train_step, state, batch, np.int32(0)))
  assert texts[0] != texts[1]


def test_bench_cli_writes_jsonl_and_table(tmp_path):
  bench.main(["--grid", "tiny", "--warmup", "1", "--iters", "2", "--no_pipeline", "--pairs", "3",
              "--out", str(tmp_path)])
  rows = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
  timed = [r for r in rows if "train_ms" in r]
  assert [r["bf"] for r in timed] == [False, True]
  assert all(r["train_ms"] > 0 and r["eval_ms"] > 0 and r["jax"] and r["platform"] == "cpu"
             for r in timed)
  assert any(r.get("equal") is True for r in rows)
  table = (tmp_path / "bench.md").read_text()
  assert "| mlp/b64/bf-global/float32/1dev |" in table and "%" in table
  paired = [r for r in rows if r.get("check") == "paired_bf_overhead"]
  assert paired and paired[0]["pairs"] == 3 and paired[0]["ratio_min"] > 0
  assert "median of 3 alternating pairs" in table


@pytest.mark.slow
def test_the_jpeg_pipeline_benchmark_reads_a_folder_and_ends_on_images_per_s(tmp_path, capsys,
                                                                             monkeypatch):
  from bf_jax.bench import pipeline as bench_pipeline

  bench_pipeline.make_images(tmp_path / "jpegs", count=16)
  assert len(list((tmp_path / "jpegs").rglob("*.jpg"))) == 16
  monkeypatch.setattr("sys.argv", ["pipeline", "--images", str(tmp_path / "jpegs"),
                                   "--workers", "0", "1", "--batches", "2", "--batch_size", "8"])
  bench_pipeline.main()
  lines = capsys.readouterr().out.strip().splitlines()
  rows = [json.loads(line) for line in lines[:-1]]
  assert lines[-1].startswith("images/s: ") and float(lines[-1].split()[-1]) > 0
  assert rows[0]["decode_full"] > 0 and rows[0]["decode_crop_scaled"] > 0
  assert 0 <= rows[1]["mean_abs"] < 8  # DCT-scaled crops stay close to the full decode's
  assert [r["workers"] for r in rows[2:]] == [0, 1]
  assert all(r["images_per_s"] > 0 and r["of_decode_limit"] > 0 for r in rows[2:])
