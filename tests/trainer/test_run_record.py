"""The workdir's record of how a run was trained: a restart with another config stops before
writing anything and names every differing field; named fields may change on purpose; every
start is in config_history.jsonl; an unchanged restart never rewrites config.json; a file the
user put in a fresh workdir is never overwritten."""

import json

import pytest
from helpers import load_config

from bf_jax.tasks import classify
from bf_jax.trainer import run_record


def _config(**changes):
  config = load_config("digits_lt", "smoke")
  config.total_steps, config.ckpt.every_steps = 4, 2
  for name, value in changes.items():
    group, _, leaf = name.rpartition("__")
    setattr(config[group] if group else config, leaf, value)
  return config


def _snapshot(root):
  return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
          for p in sorted(root.rglob("*")) if p.is_file()}


def _history(workdir):
  return [json.loads(line) for line in (workdir / "config_history.jsonl").read_text().splitlines()]


def test_restart_with_another_config_stops_untouched_unless_the_fields_are_named(tmp_path):
  classify.run(_config(), tmp_path)
  record = (tmp_path / "config.json").read_text()
  assert json.loads(record)["optim"]["lr"] == _config().optim.lr
  assert [h["start_step"] for h in _history(tmp_path)] == [0]

  # Unchanged: resumes (here: nothing left to train), the record is not rewritten.
  mtime = (tmp_path / "config.json").stat().st_mtime_ns
  classify.run(_config(), tmp_path)
  assert (tmp_path / "config.json").stat().st_mtime_ns == mtime
  assert [h["start_step"] for h in _history(tmp_path)] == [0, 4]

  # Changed without saying so: every differing field listed, nothing written.
  before = _snapshot(tmp_path)
  lr = _config().optim.lr
  with pytest.raises(ValueError, match=r"(?s)optim\.lr: .* \(recorded\) -> 0\.5 \(now\).*"
                                       r"total_steps: 4 \(recorded\) -> 6 \(now\).*"
                                       r"--config\.resume_changes=optim\.lr,total_steps"):
    classify.run(_config(optim__lr=0.5, total_steps=6), tmp_path)
  assert _snapshot(tmp_path) == before

  # Named on purpose: it trains on, and the history keeps how steps 1-4 were trained.
  result = classify.run(_config(optim__lr=0.5, total_steps=6,
                                resume_changes="optim.lr,total_steps"), tmp_path)
  assert result["step"] == 6
  assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr"] == 0.5
  history = _history(tmp_path)
  assert [h["start_step"] for h in history] == [0, 4, 4]
  assert history[0]["config"]["optim"]["lr"] == lr
  assert history[2]["changed"]["optim.lr"] == [lr, 0.5]
  assert {"time", "host", "processes", "git_commit"} <= set(history[2])


def test_a_file_the_user_put_in_a_fresh_workdir_is_never_overwritten(tmp_path):
  (tmp_path / "config.json").write_text("my notes")
  with pytest.raises(FileExistsError, match=r"bf_jax did not write it, and will not overwrite "
                                            r"it\. Move the file away or pick another"):
    classify.run(_config(), tmp_path)
  assert (tmp_path / "config.json").read_text() == "my notes"
  assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_differences_are_flat_and_name_absent_fields():
  assert run_record.differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == {
      "a.c": (2, 3), "d": ("<absent>", 4)}


def test_a_start_that_saved_no_checkpoint_does_not_pin_the_config(tmp_path):
  """lr too high, the loss blew up at step 1: the rerun with a lower lr is not refused."""
  run_record.record(_config(optim__lr=1e6), tmp_path, 0, {})  # as the failed start left it
  diffs = run_record.check(_config(), tmp_path)
  assert diffs == {"optim.lr": (1e6, _config().optim.lr)}
  result = classify.run(_config(), tmp_path)
  assert result["step"] == 4
  assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr"] == _config().optim.lr
  assert [h["config"]["optim"]["lr"] for h in _history(tmp_path)] == [1e6, _config().optim.lr]


def test_config_json_changes_only_with_a_checkpoint_trained_under_it(tmp_path):
  """A resume that changed lr on purpose and blew up before its first save leaves config.json
  as the checkpoints were trained: the original command then resumes, unrefused."""
  classify.run(_config(), tmp_path)
  record = (tmp_path / "config.json").read_text()
  with pytest.raises(FloatingPointError, match=r"loss became"):
    classify.run(_config(optim__lr=1e30, total_steps=8, resume_changes="optim.lr,total_steps"),
                 tmp_path)
  assert (tmp_path / "config.json").read_text() == record
  assert _history(tmp_path)[-1]["changed"]["optim.lr"] == [_config().optim.lr, 1e30]
  result = classify.run(_config(total_steps=8, resume_changes="total_steps"), tmp_path)
  assert result["step"] == 8
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 8


def test_a_field_the_schema_gained_since_the_run_resumes_at_its_default(tmp_path):
  """A run recorded before ``paco`` existed resumes; the new field away from its default does
  not."""
  config = _config()
  config.total_steps, config.optim.warmup_steps = 2, 0
  classify.run(config, tmp_path)
  recorded = json.loads((tmp_path / "config.json").read_text())
  del recorded["paco"]
  (tmp_path / "config.json").write_text(json.dumps(recorded))
  assert run_record.check(config, tmp_path) == {}
  config.paco.alpha = 0.5
  with pytest.raises(ValueError, match=r"paco\.alpha: '<absent>' \(recorded\) -> 0\.5"):
    run_record.check(config, tmp_path)


def test_a_restart_may_change_what_the_backward_pass_recomputes():
  allowed = run_record.allowed_changes(_config())
  assert "model.remat" in allowed and "model.name" not in allowed
