"""How the command line ends on an error: one message for what the user can fix, a traceback for
what looks like a bug. ``--debug`` (or ``BF_JAX_DEBUG=1``) shows every traceback.

Exit codes: 2, the input needs fixing (a flag, the config, a file, the workdir, checkpoints that
are all unreadable); 1, training started and stopped on a fault (a non-finite loss, a checkpoint
that could not be saved); 130, Ctrl-C.
"""

from __future__ import annotations

import os
import re
import sys
from typing import NoReturn

from absl import flags

from bf_jax.trainer import checkpointing, loop

USAGE, FAULT, INTERRUPTED = 2, 1, 130
_HINT = "(--debug or BF_JAX_DEBUG=1 shows the traceback)"


def debugging(argv: list[str] | None = None, flag: bool = False) -> bool:
  """Whether to show tracebacks: the env variable, or ``--debug`` (in ``argv`` before parsing)."""
  if os.environ.get("BF_JAX_DEBUG", "") not in ("", "0"):
    return True
  return flag or (argv is not None and any(a in ("--debug", "--debug=true") for a in argv))


def exit_with(message: str, code: int) -> NoReturn:
  sys.stderr.write(f"error: {message}\n{_HINT}\n" if code != INTERRUPTED else f"{message}\n")
  sys.stderr.flush()
  raise SystemExit(code)


def _chain(exc: BaseException) -> list[BaseException]:
  """``exc`` and what it was raised from, outermost first (ml_collections wraps twice)."""
  out = [exc]
  while (out[-1].__cause__ or out[-1].__context__) is not None:
    out.append(out[-1].__cause__ or out[-1].__context__)
  return out


def _text(exc: BaseException) -> str:
  """The exception's own words: KeyError and AttributeError(KeyError) quote and escape them."""
  while exc.args and isinstance(exc.args[0], BaseException):
    exc = exc.args[0]
  if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
    return exc.args[0]
  return str(exc)


def stray_arguments(stray: list[str], argv: list[str]) -> str:
  """The message for words no flag took (absl leaves them as positionals), naming the first."""
  word = stray[0]
  before = argv[argv.index(word) - 1] if word in argv and argv.index(word) > 0 else ""
  if before.startswith("--config.") and "=" not in before:
    return (f"unexpected argument {word!r} after {before}: write {before}={word} (a flag takes "
            f"its value after '='; a bare boolean flag means true); nothing was run.")
  if word.startswith(":"):
    return (f"unexpected argument {word!r}: the config's args follow its path with no space, "
            f"e.g. --config configs/digits_lt.py{word}; nothing was run.")
  return (f"unexpected argument {word!r}: flags are --name=value (python -m bf_jax.main "
          f"--helpfull lists them); nothing was run.")


def _config_flag(argv: list[str]) -> str | None:
  """The value given to --config, as typed."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def flag_error(exc: BaseException, argv: list[str]) -> str | None:
  """The message for an error while parsing the command line, or None (a bug: traceback)."""
  chain = _chain(exc)
  root = chain[-1]
  missing = next((e for e in chain if isinstance(e, (AttributeError, KeyError))), None)
  config = _config_flag(argv)
  if missing is not None and "has no attribute 'get_config'" in _text(missing):
    return (f"--config={config}: the file defines no get_config(arg=None) (is it empty?); a "
            f"config file returns its ConfigDict from get_config, as configs/digits_lt.py does.")
  if isinstance(exc, flags.Error) and "--config must have a value other than None" in str(exc):
    return (f"--config={config}: get_config() returned None (a missing return?); it must return "
            f"the ConfigDict, as configs/digits_lt.py does.")
  if isinstance(exc, SyntaxError):
    return (f"the config file {exc.filename} does not parse: {exc.msg} at line {exc.lineno}. "
            f"Fix the file, or pick another --config.")
  if missing is not None:  # an override naming no config field
    name, *hint = _text(missing).splitlines()
    name = name.strip("'\"")
    arg = next((a for a in argv if a.split("=")[0].startswith("--config.")
                and a.split("=")[0].endswith(f".{name}")), name)
    hint = " ".join(hint) or "The fields are in bf_jax/trainer/config_base.py."
    return f"{arg}: the config has no field {name!r}. {hint}"
  if isinstance(exc, flags.Error) and "Non-boolean argument" in str(exc):
    arg = str(exc).split(": ")[0].removeprefix("flag ")
    return f"{arg}: a boolean flag takes true/false, on/off, yes/no or 1/0."
  if isinstance(exc, flags.Error):
    if root is not exc and "Traceback" in str(exc):  # a config file's own error, e.g. a bad arg
      flag = str(exc).split(": Error whilst")[0]
      return f"{flag}: {_text(root)}"
    return f"{exc}. Pass --helpfull to see every flag."
  return None


def describe(exc: BaseException, workdir: str | None, argv: list[str] | None = None
             ) -> tuple[str, int] | None:
  """The message and exit code for an error a run raised, or None (a bug: traceback)."""
  if isinstance(exc, loop.Interrupted):
    return str(exc), INTERRUPTED
  if isinstance(exc, KeyboardInterrupt):
    return ("aborted by Ctrl-C: what was trained since the newest checkpoint is lost; the same "
            "command resumes from that checkpoint."), INTERRUPTED
  if isinstance(exc, FloatingPointError):
    return str(exc), FAULT
  if isinstance(exc, checkpointing.SaveFailed):  # training started: a fault, as a NaN is
    return str(exc), FAULT
  if isinstance(exc, checkpointing.NoReadableCheckpoint):
    return str(exc), USAGE
  if isinstance(exc, OSError) and "Failed loading config file" in str(exc):
    missing = re.search(r"No such file or directory: '([^']+)'", str(exc))
    given = _config_flag(argv or [])
    if missing and given and ":" in given and os.path.exists(given):
      return (f"--config={given}: the path is cut at its first ':' (what follows is the config's "
              f"arg), so {missing.group(1)} was looked for; copy or link the file to a path "
              f"without ':'."), USAGE
    if missing:
      return (f"--config={missing.group(1)}: no such file (relative paths start at "
              f"{os.getcwd()}). The shipped configs are in configs/."), USAGE
    return f"--config: {str(exc).strip()}", USAGE
  if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
    path = os.fspath(exc.filename)
    if workdir and path.startswith(os.fspath(workdir).rstrip("/")):
      return (f"--workdir={workdir} cannot be written ({exc.strerror}: {path}); give a "
              f"directory you can create and write to."), USAGE
    return f"{exc.strerror}: {path}", USAGE
  if isinstance(exc, (ValueError, OSError)):  # what bf_jax's checks raise
    return str(exc), USAGE
  return None
