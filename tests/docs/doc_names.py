"""What exists in the repository, for tests/docs: modules and their flags, names in modules,
Makefile targets, pip extras, config files with their args and fields, paths.

Nothing of bf_jax is imported except the config files (milliseconds; nothing compiles): modules
and names are found in the source files.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import pathlib
import re
import tomllib
import types

import ml_collections
from doc_pages import PLACEHOLDER, ROOT


def module_file(name: str) -> pathlib.Path | None:
  """bf_jax/<a>/<b>.py or bf_jax/<a>/<b>/__init__.py for ``bf_jax.<a>.<b>``; None if neither exists."""
  base = ROOT.joinpath(*name.split("."))
  for path in (base.with_suffix(".py"), base / "__init__.py"):
    if path.is_file():
      return path
  return None


@functools.cache
def _top_level_names(path: pathlib.Path) -> frozenset[str]:
  """Names a module defines or imports at its top level (what ``module.NAME`` can reach)."""
  names = set()
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      for target in targets:
        names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names.update((a.asname or a.name).split(".")[0] for a in node.names)
  return frozenset(names)


def check_module(name: str) -> str | None:
  """Why ``python -m name`` would fail, or None."""
  if name.split(".")[0] != "bf_jax":
    try:
      found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
      found = False
    return None if found else f"no module {name} is installed; fix the name or install it"
  path = module_file(name)
  if path is None:
    return f"no module {name} (no {name.replace('.', '/')}.py); see `find bf_jax -name '*.py'`"
  if path.name == "__init__.py":
    if not (path.parent / "__main__.py").is_file():
      return f"{name} is a package without __main__.py, so `python -m {name}` runs nothing"
  elif '__name__ == "__main__"' not in path.read_text():
    return f"{path.relative_to(ROOT)} has no `if __name__ == \"__main__\":`, so -m runs nothing"
  return None


def check_flags(source: pathlib.Path, args: list[str]) -> list[str]:
  """Each ``--flag`` given to a bf_jax module or a repo script appears in its source, as
  ``--flag`` (argparse, shell) or ``"flag"`` (absl): a renamed flag is then caught."""
  text = source.read_text()
  problems = []
  for arg in args:
    if not arg.startswith("--") or arg.startswith("--config") or arg == "--":
      continue
    flag = arg[2:].split("=", 1)[0]
    if f"--{flag}" not in text and f'"{flag}"' not in text and f"'{flag}'" not in text:
      problems.append(f"{source.relative_to(ROOT)} takes no flag --{flag}; use the name its "
                      f"--help lists")
  return problems


def check_dotted(name: str) -> str | None:
  """Why ``bf_jax.a.b.name`` names nothing, or None (the first attribute past the module)."""
  parts = name.split(".")
  for cut in range(len(parts), 0, -1):
    path = module_file(".".join(parts[:cut]))
    if path is None:
      continue
    if cut == len(parts):
      return None
    attr = parts[cut]
    package_dir = path.parent if path.name == "__init__.py" else None
    submodule = package_dir and module_file(f"{'.'.join(parts[:cut])}.{attr}")
    if attr in _top_level_names(path) or submodule:
      return None
    return (f"{'.'.join(parts[:cut])} ({path.relative_to(ROOT)}) defines no {attr!r}; name what "
            f"it defines now")
  return f"no module {parts[0]}"


@functools.cache
def make_targets() -> frozenset[str]:
  targets = set()
  for line in (ROOT / "Makefile").read_text().splitlines():
    m = re.match(r"^([A-Za-z0-9_.%/$()-]+(?:\s+[A-Za-z0-9_.%/$()-]+)*)\s*:(?!=)", line)
    if m and not line.startswith("\t"):
      targets.update(m.group(1).split())
  return frozenset(t for t in targets if not t.startswith((".", "$")))  # not .PHONY, $(STAMP)


@functools.cache
def pip_extras() -> frozenset[str]:
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  return frozenset(project.get("optional-dependencies", {}))


@functools.cache
def config_module(path: str) -> types.ModuleType:
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@functools.cache
def load_config(path: str, arg: str | None) -> ml_collections.ConfigDict:
  return config_module(path).get_config(arg)


def _field_paths(c: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
  out = set()
  for key in c:
    out.add(prefix + key)
    if isinstance(c[key], ml_collections.ConfigDict):
      out |= _field_paths(c[key], f"{prefix}{key}.")
  return out


@functools.cache
def all_fields() -> frozenset[str]:
  """Every field of every config under configs/ (default args): for fields named without one."""
  out = set()
  for path in sorted((ROOT / "configs").glob("*.py")):
    out |= _field_paths(load_config(f"configs/{path.name}", None))
  return frozenset(out)


def check_field(field: str, config: ml_collections.ConfigDict | None, where: str) -> str | None:
  if config is None:
    if field in all_fields():
      return None
    return f"no config under configs/ has a field {field!r}; see bf_jax/trainer/config_base.py"
  node = config
  for i, part in enumerate(field.split(".")):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return (f"{where} has no field {'.'.join(field.split('.')[:i + 1])!r} "
              f"(asked for --config.{field}); see bf_jax/trainer/config_base.py")
    node = node[part]
  return None


def _unshell_arg(path: str, arg: str) -> str:
  """``weights=$HOME/x.npz`` -> the documented default for that arg: the shell fills it in, and
  only the arg's name can be wrong. An unknown name stays, so that get_config refuses it."""
  defaults = getattr(config_module(path), "ARGS", {})
  items = []
  for item in filter(None, arg.split(",")):
    key, _, value = item.partition("=")
    if "$" in value and key in defaults:
      default = defaults[key]
      value = ("on" if default else "off") if isinstance(default, bool) else str(default)
    items.append(f"{key}={value}" if value else key)
  return ",".join(items)


def check_config(spec: str) -> tuple[str | None, ml_collections.ConfigDict | None]:
  """(problem, config) for ``PATH[:ARG]``."""
  path, _, arg = spec.partition(":")
  if not path.startswith("configs/") or not (ROOT / path).is_file():
    return f"config file {path} does not exist; see `ls configs`", None
  arg = _unshell_arg(path, arg)
  try:
    return None, load_config(path, arg or None)
  except Exception as e:  # noqa: BLE001 (any failure of get_config is the page's problem)
    known = getattr(config_module(path), "ARGS", None)
    hint = f"its args: {', '.join(sorted(known))}" if known else "see its docstring for its args"
    return f"{path}: get_config({arg!r}) fails: {type(e).__name__}: {e} Fix the arg; {hint}", None


def expand_braces(text: str) -> list[str]:
  """``a.{b, c}_d`` -> [a.b_d, a.c_d] (one level, as the pages write field groups)."""
  m = re.search(r"\{([^{}]*)\}", text)
  if not m:
    return [text]
  return [out for alt in m.group(1).split(",")
          for out in expand_braces(text[:m.start()] + alt.strip() + text[m.end():])]


def check_path(token: str) -> str | None:
  if any(c in token for c in "<>$") or "..." in token or PLACEHOLDER in token:
    return None  # a placeholder
  for path in expand_braces(token.rstrip(",.;:")):
    if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
      return f"{path} does not exist; correct the path (or drop it, if the file is gone)"
  return None
