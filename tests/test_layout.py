"""The tree's rules, read from the imports (AST), so a change that breaks one fails here: the
layer stands alone, models build on it and data on nothing, shared code never imports a task,
tasks never import each other, no import cycle, every task registers validate and run, the
trainer names no task (read from its tokens), each task leans on at most 8 trainer modules, and
no file grows past 400 lines."""

import ast
import importlib
import io
import pathlib
import re
import sys
import tokenize

import pytest
from helpers import ROOT

PKG = ROOT / "bf_jax"
LAYER_DEPS = {"jax", "flax", "numpy"}  # and the standard library
MAX_LINES = 400


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
  path = ROOT.joinpath(*dotted.split("."))
  return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: pathlib.Path) -> set[str]:
  """Every module ``path`` imports, anywhere in the file (function bodies too): absolute names;
  ``from pkg import name`` counts as ``pkg.name`` when that is a module, else as ``pkg``."""
  tree = ast.parse(path.read_text())
  me = _module_name(path)
  package = me if path.name == "__init__.py" else me.rpartition(".")[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
      for alias in node.names:
        full = f"{base}.{alias.name}"
        out.add(full if base.startswith("bf_jax") and _is_module(full) else base)
  return out


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {m: {i for i in imports_of(p) if i in MODULES} for m, p in MODULES.items()}


def _under(module: str, package: str) -> bool:
  return module == package or module.startswith(package + ".")


def test_the_layer_imports_only_itself_jax_flax_numpy_and_the_standard_library():
  bad = {}
  for m, p in MODULES.items():
    if not _under(m, "bf_jax.layer"):
      continue
    for i in imports_of(p):
      top = i.split(".")[0]
      ok = (top in LAYER_DEPS or top in sys.stdlib_module_names or top == "__future__"
            or _under(i, "bf_jax.layer"))
      if not ok:
        bad.setdefault(m, []).append(i)
  assert not bad, f"bf_jax.layer must import only jax, flax, numpy and itself: {bad}"


def test_the_package_root_exports_the_layer_alone():
  assert GRAPH["bf_jax"] <= {m for m in MODULES if _under(m, "bf_jax.layer")}, GRAPH["bf_jax"]


@pytest.mark.parametrize("shared", ["bf_jax.trainer", "bf_jax.data", "bf_jax.models",
                                    "bf_jax.layer", "bf_jax.bench"])
def test_shared_code_never_imports_a_task(shared):
  bad = {m: sorted(i for i in deps if _under(i, "bf_jax.tasks"))
         for m, deps in GRAPH.items() if _under(m, shared)}
  assert not {m: v for m, v in bad.items() if v}, f"{shared} imports a task: {bad}"


@pytest.mark.parametrize("package, allowed", [
    ("bf_jax.models", ("bf_jax.models", "bf_jax.layer")),
    ("bf_jax.data", ("bf_jax.data",)),
])
def test_models_build_on_the_layer_and_data_on_nothing(package, allowed):
  bad = {m: sorted(i for i in deps if not any(_under(i, a) for a in allowed))
         for m, deps in GRAPH.items() if _under(m, package)}
  assert not {m: v for m, v in bad.items() if v}, f"{package} may import only {allowed}: {bad}"


def test_no_task_imports_another():
  tasks = [p.name for p in (PKG / "tasks").iterdir() if (p / "__init__.py").is_file()]
  bad = []
  for m, deps in GRAPH.items():
    for t in tasks:
      if _under(m, f"bf_jax.tasks.{t}"):
        bad += [(m, i) for i in deps if _under(i, "bf_jax.tasks") and
                not _under(i, f"bf_jax.tasks.{t}")]
  assert not bad, f"a task imports another task (or the registry): {bad}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state, stack = {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for d in sorted(graph.get(m, ())):
      if state.get(d) == "open":
        return stack[stack.index(d):] + [d]
      if d not in state and (found := visit(d)):
        return found
    state[m] = "done"
    stack.pop()
    return None

  for m in sorted(graph):
    if m not in state and (found := visit(m)):
      return found
  return None


def test_no_import_cycle():
  assert _cycle(GRAPH) is None, f"import cycle: {' -> '.join(_cycle(GRAPH))}"


def test_the_cycle_finder_finds_a_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_task_package_is_registered_with_validate_and_run():
  from bf_jax import tasks
  packages = sorted(p.name for p in (PKG / "tasks").iterdir() if (p / "__init__.py").is_file())
  assert sorted(tasks.REGISTRY) == packages
  for name, module in tasks.REGISTRY.items():
    task = importlib.import_module(module)
    assert callable(task.validate) and callable(task.run), name
    assert tasks.get(name) is task
  with pytest.raises(ValueError, match=r"config.task='segment' must be one of \('classify'"):
    tasks.get("segment")


# What names a task: its registry name and the methods it runs. A new task must add its words
# here (the test below checks the keys against the registry), so the trainer cannot name it.
TASK_WORDS = {
    "classify": ("classify", "paco"),
    "moco": ("moco",),
    "dg": ("dg", "swad", "domainbed"),
    "czsl": ("czsl", "cge", "compcos"),
}
# Trainer modules let off the rule below: none (each task's config block lives in its package).
_STILL_HOLDS_TASK_BLOCKS: set[str] = set()
_STRING_TOKENS = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


def _task_words_in(source: str, words: set[str]) -> list[tuple[int, str]]:
  """(line, token) of each comment, string or identifier naming one of ``words``, as a whole
  word case-insensitively: "_" splits words too, so ``plot_swad`` and "task=dg" count while
  "edges" or "classifier" do not."""
  word = re.compile(r"(?<![a-z0-9])(%s)(?![a-z0-9])" % "|".join(map(re.escape, sorted(words))),
                    re.IGNORECASE)
  out = []
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type in (tokenize.COMMENT, tokenize.NAME, *_STRING_TOKENS) and word.search(tok.string):
      out.append((tok.start[0], tok.string[:60]))
  return out


def test_the_task_words_cover_the_registry():
  from bf_jax import tasks
  assert set(TASK_WORDS) == set(tasks.REGISTRY), "add the new task's words to TASK_WORDS"


def test_the_task_word_scanner_flags_comments_strings_and_identifiers():
  words = {w for ws in TASK_WORDS.values() for w in ws}
  assert _task_words_in("x = 1  # MoCo's queue\n", words) == [(1, "# MoCo's queue")]
  assert _task_words_in('label = "SWAD window"\n', words) == [(1, '"SWAD window"')]
  assert _task_words_in("def plot_swad():\n  pass\n", words) == [(1, "plot_swad")]
  # Python 3.12 splits an f-string around its fields; the text between them is still read.
  assert [t for _, t in _task_words_in('f"task={name}, the dg run"\n', words)] in (
      [", the dg run"], ['f"task={name}, the dg run"'])
  clean = ("loss = 1  # the classifier's loss\nedges = 'supervised, contrastive'\n"
           "momentum = key_encoder = 0.999  # the key encoder's momentum\n")
  assert _task_words_in(clean, words) == []


def test_the_trainer_names_no_task():
  """Shared code says what a task accepts (trainer.config_check.Accepts), never which task: no
  comment, string or identifier under bf_jax/trainer names a task or one of its methods."""
  words = {w for ws in TASK_WORDS.values() for w in ws}
  bad = {m: found for m, p in MODULES.items()
         if _under(m, "bf_jax.trainer") and m not in _STILL_HOLDS_TASK_BLOCKS
         and (found := _task_words_in(p.read_text(), words))}
  assert not bad, f"the trainer names a task (say what the code does instead): {bad}"


MAX_TRAINER_MODULES = 8


def test_each_task_imports_few_trainer_modules():
  """A task leans on a handful of trainer modules; many means shared code is spread thin or
  the task reaches into the trainer's insides."""
  counts, used = {}, {}
  for task in TASK_WORDS:
    package = f"bf_jax.tasks.{task}"
    used[task] = sorted({i for m, deps in GRAPH.items() if _under(m, package)
                         for i in deps if _under(i, "bf_jax.trainer")})
    counts[task] = len(used[task])
  over = {t: used[t] for t, n in counts.items() if n > MAX_TRAINER_MODULES}
  assert not over, (f"trainer modules imported per task {counts} (at most "
                    f"{MAX_TRAINER_MODULES}); over: {over}")


def test_no_file_over_400_lines():
  files = [*PKG.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "configs").glob("*.py"),
           *(ROOT / "tools").glob("*.py")]
  long = {str(f.relative_to(ROOT)): n for f in files
          if (n := len(f.read_text().splitlines())) > MAX_LINES}
  assert not long, f"split these (at most {MAX_LINES} lines a file): {long}"
