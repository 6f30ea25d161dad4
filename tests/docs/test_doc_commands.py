"""Every command in README.md and docs/*.md names things that exist, so a page cannot rot unnoticed.

Checked in ```bash / ```sh / ```shell / ```console blocks and in inline code spans:

* ``python -m MODULE``: the module exists (a file under bf_jax/, runnable with ``-m``);
* ``--config PATH[:ARG]`` (and ``CONFIG=PATH[:ARG]``): a file under configs/ whose
  ``get_config(ARG)`` accepts ARG (an unknown arg raises in ``parse_arg``);
* ``--config.a.b=value``: the field exists in that config (in some config, where none is named);
* ``make TARGET``: a target of the Makefile; ``launch/<script>.sh``, ``tools/<tool>.py``, any path under
  bf_jax/, configs/, tests/, ...: the file exists; ``pip install '.[extra]'``: pyproject has it;
* in prose: config fields such as ``bf.lr_mult``, dotted names such as ``bf_jax.tasks.run``,
  imports in ```python blocks, and relative links (with their #anchors).

Nothing is imported from bf_jax except the config files (milliseconds; nothing compiles): modules
and names are found in the source files.
"""

from __future__ import annotations

import ast
import itertools
import pathlib
import re

from doc_names import (check_config, check_dotted, check_field, check_flags, check_module,
                       check_path, expand_braces, make_targets, module_file, pip_extras)
from doc_pages import (PLACEHOLDER, ROOT, Snippet, github_slugs, pages, parse_page, segments,
                       tokenize)

# Folders of the repository whose paths a page may name; anything else (runs/, ~/data) is output.
REPO_DIRS = ("bf_jax/", "configs/", "tests/", "tools/", "launch/", "benchmarks/", "docs/")
CONFIG_GROUPS = ("bf", "ckpt", "data", "model", "optim", "loss", "init", "moco", "dg", "czsl")
WRAPPERS = {"sbatch", "srun", "bash", "sh", "env", "time", "exec", "nohup", "sudo"}
FILE_SUFFIXES = (".py", ".json", ".jsonl", ".md", ".png", ".npz", ".txt", ".sh", ".t7")


def check_argv(argv: list[str], env: dict[str, str]) -> list[str]:
  """Problems of one simple command (no separators), e.g. ['python', '-m', 'bf_jax.main', ...]."""
  problems = []
  while argv and argv[0] in WRAPPERS:  # sbatch --nodes=4 launch/<job>.sbatch, srun ... python ...
    argv = argv[1:]
    while argv and argv[0].startswith("-"):
      argv = argv[1:]
  if not argv:
    return problems
  head, rest = argv[0], argv[1:]
  consumed = {0}  # argv indices already checked, so that none is reported twice
  if re.fullmatch(r"(?:\S*/)?python(?:3(?:\.\d+)?)?", head):
    if rest[:1] == ["-m"] and len(rest) > 1:
      if (problem := check_module(rest[1])):
        problems.append(problem)
      elif rest[1].startswith("bf_jax."):
        path = module_file(rest[1])
        path = path.parent / "__main__.py" if path.name == "__init__.py" else path
        problems += check_flags(path, rest[2:])
    elif rest and rest[0].endswith(".py"):
      consumed.add(1)
      if problem := check_path(rest[0]):
        problems.append(f"script {problem}")
      elif PLACEHOLDER not in rest[0] and "$" not in rest[0]:
        problems += check_flags(ROOT / rest[0], rest[1:])
  elif head == "make":
    skip = False
    for token in rest:
      if skip:
        skip = False
      elif token in ("-C", "-f"):
        skip = True
      elif not token.startswith("-") and "=" not in token and token not in make_targets():
        problems.append(f"the Makefile has no target {token!r} "
                        f"(targets: {', '.join(sorted(make_targets()))})")
  elif "/" in head and not head.startswith(("/", "~", "$", ".venv/")):
    if (problem := check_path(head)):
      problems.append(f"script {problem}")
    elif (ROOT / head).is_file():
      problems += check_flags(ROOT / head, rest)

  # Arguments, whatever the command: --config and its overrides, repo paths, pip extras.
  config, config_name = None, None
  specs = [env["CONFIG"]] if "CONFIG" in env else []
  for i, token in enumerate(argv):
    if token == "--config" and i + 1 < len(argv):
      specs.append(argv[i + 1])
      consumed.add(i + 1)
    elif token.startswith("--config="):
      specs.append(token.split("=", 1)[1])
  for spec in specs:
    path = spec.partition(":")[0]
    if "$" in path or "..." in path or PLACEHOLDER in path:
      continue  # a placeholder such as "$CONFIG" or configs/<file>.py
    if not path.startswith("configs/"):
      if path.endswith(".py"):
        problems.append(f"--config {spec}: config files live under configs/")
      continue  # a placeholder such as C
    problem, config = check_config(spec)
    config_name = spec
    if problem:
      problems.append(problem)
  for i, token in enumerate(argv):
    if token.startswith("--config."):
      field = token[len("--config."):].split("=", 1)[0]
      if problem := check_field(field, config, config_name or ""):
        problems.append(problem)
    elif token.startswith(REPO_DIRS) and i not in consumed:
      if problem := check_path(token):
        problems.append(problem)
    elif token in ("-r", "--requirement") and i + 1 < len(argv) and "$" not in argv[i + 1]:
      if not (ROOT / argv[i + 1]).is_file():
        problems.append(f"{argv[i + 1]} does not exist; install from pyproject.toml's extras")
    elif m := re.fullmatch(r"(?:\.|bf_jax)\[([\w,-]+)\]", token):
      problems += [f"pip extra {e!r} is not in pyproject.toml "
                   f"(extras: {', '.join(sorted(pip_extras()))})"
                   for e in m.group(1).split(",") if e not in pip_extras()]
  return problems


def check_shell(snippets: list[Snippet]) -> list[tuple[Snippet, str]]:
  """Problems of one block's logical lines; ``for X in a b; do`` values substitute ``$X``."""
  problems, loops = [], {}
  for snippet in snippets:
    comment = re.search(r"(?:^|\s)#(.*)$", snippet.text)  # paths a comment points to count too
    repo_path = rf"(?<![\w/.~])((?:{'|'.join(REPO_DIRS)})[\w./*-]*\w)"
    for path in re.findall(repo_path, comment.group(1) if comment else ""):
      if problem := check_path(path):
        problems.append((snippet, f"(in the comment) {problem}"))
    tokens = tokenize(snippet.text)
    if tokens is None:
      problems.append((snippet, "cannot be parsed as a shell command (unbalanced quotes?)"))
      continue
    for segment in segments(tokens):
      while segment and segment[0] in ("do", "then", "else", "!"):
        segment = segment[1:]
      if not segment or segment[0] in ("done", "fi", "export", "cd"):
        continue
      if segment[0] == "for" and len(segment) > 2 and segment[2] == "in":
        loops[segment[1]] = segment[3:]
        continue
      used = [v for v in loops if re.search(rf"\$\{{?{v}\b", " ".join(segment))]
      for values in itertools.product(*(loops[v] for v in used)):
        argv = list(segment)
        for v, value in zip(used, values):
          argv = [re.sub(rf"\$\{{?{v}\}}?(?!\w)", value, a) for a in argv]
        env = {}
        while argv and re.match(r"^[A-Za-z_]\w*=", argv[0]):
          key, _, value = argv.pop(0).partition("=")
          env[key] = value
        problems += [(snippet, p) for p in check_argv(argv, env)]
  return problems


def is_command(text: str) -> bool:
  """Whether an inline span is a command (checked as one) rather than a name or a value."""
  words = text.split()
  while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
    words = words[1:]
  if not words:
    return False
  head = words[0]
  return bool(re.fullmatch(r"(?:\S*/)?python(?:3(?:\.\d+)?)?", head) and len(words) > 1
              or head in {"make", "pip", "sbatch", "srun", "bash"} and len(words) > 1
              or head.startswith(("launch/", "tools/", "benchmarks/")))


def check_span(span: Snippet) -> list[str]:
  """Inline code: a command, a config spec, a config field, a dotted bf_jax name or a repo path."""
  text = span.text
  if is_command(text) or " && " in text:
    return [p for _, p in check_shell([span])]
  problems = []
  if re.fullmatch(r"configs/\S+\.py(:\S*)?", text) and not re.search(r"[<*$]|\.\.\.", text):
    problem, _ = check_config(text)
    return [problem] if problem else []
  for token in (t.strip("'\"") for t in text.split()):
    if token.startswith("--config."):
      for field in expand_braces(token[len("--config."):].split("=", 1)[0]):
        if problem := check_field(field, None, ""):
          problems.append(problem)
    elif token.startswith(REPO_DIRS) and (problem := check_path(token)):
      problems.append(problem)
  m = re.fullmatch(rf"((?:{'|'.join(CONFIG_GROUPS)})\.[\w.]*(?:\{{[^}}]*\}})?)(?:=.*)?", text)
  if m and not m.group(1).endswith(FILE_SUFFIXES):
    for field in expand_braces(m.group(1)):
      if problem := check_field(field, None, ""):
        problems.append(problem)
  m = re.match(r"(bf_jax(?:\.\w+)+)", text)
  if m and (problem := check_dotted(m.group(1))):
    problems.append(problem)
  return problems


def check_python(code: str) -> list[str]:
  """Every bf_jax import in a ```python block names a module and names that exist."""
  try:
    tree = ast.parse(code)
  except SyntaxError as e:
    return [f"python block does not parse: {e}"]
  problems = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      problems += [check_dotted(a.name) for a in node.names if a.name.startswith("bf_jax")]
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bf_jax"):
      if module_file(node.module) is None:
        problems.append(f"`from {node.module} import ...`: no module {node.module}")
      else:
        problems += [check_dotted(f"{node.module}.{a.name}") for a in node.names]
  return [p for p in problems if p]


def check_links(page: pathlib.Path, prose: str) -> list[tuple[int, str]]:
  problems = []
  for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", prose):
    target = m.group(1)
    if re.match(r"^[a-z]+:", target):
      continue  # http(s), mailto: not checked here
    line = prose.count("\n", 0, m.start()) + 1
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    if not resolved.exists():
      fix = " (from docs/, repository files are ../)" if page.parent.name == "docs" else ""
      problem = f"link {target}: {path} does not exist; point it at the page or file{fix}"
      problems.append((line, problem))
    elif anchor and resolved.suffix == ".md" and anchor not in github_slugs(resolved.read_text()):
      problem = f"link {target}: {path or page.name} has no heading #{anchor}; link to one it has"
      problems.append((line, problem))
  return problems


def check_markdown(name: str, text: str, page: pathlib.Path | None = None) -> list[str]:
  """Every problem of one page, as 'page:line: `snippet`: problem'."""
  parsed = parse_page(text)
  out = []
  for snippet, problem in check_shell(parsed.shell):
    out.append(f"{name}:{snippet.line}: `{snippet.text.strip()}`: {problem}")
  for span in parsed.spans:
    out += [f"{name}:{span.line}: `{span.text}`: {p}" for p in check_span(span)]
  for block in parsed.python:
    out += [f"{name}:{block.line}: python block: {p}" for p in check_python(block.text)]
  for entry in parsed.listings:  # the first word of a listing line is a path
    words = entry.text.split()
    if words and words[0].startswith(REPO_DIRS) and (problem := check_path(words[0])):
      out.append(f"{name}:{entry.line}: listing: {problem}")
  if page is not None:
    out += [f"{name}:{line}: {p}" for line, p in check_links(page, parsed.prose)]
  return out


# ---- the tests -----------------------------------------------------------------------------


def test_every_page_names_only_what_exists():
  problems = []
  for page in pages():
    problems += check_markdown(str(page.relative_to(ROOT)), page.read_text(), page)
  assert not problems, ("pages name things that do not exist; fix the page (or the code, if the "
                        "page is right):\n" + "\n".join(problems))


def test_the_checker_finds_the_pages_commands():
  """Guards the parser: if it stopped finding commands, the test above would pass vacuously."""
  found = {}
  for page in pages():
    parsed = parse_page(page.read_text())
    found[page.name] = len(parsed.shell) + sum(is_command(s.text) for s in parsed.spans)
  assert found["README.md"] >= 3 and sum(found.values()) >= 40, found


def test_every_config_refuses_an_unknown_arg():
  """What makes a wrong config arg on a page fail above: get_config raises on unknown args."""
  accepting = []
  for path in sorted((ROOT / "configs").glob("*.py")):
    problem, _ = check_config(f"configs/{path.name}:no_such_arg=1")
    if problem is None:
      accepting.append(path.name)
  assert not accepting, f"these accept any arg; parse it with parse_arg(arg, **ARGS): {accepting}"


FABRICATED_PAGE = """# A page that has rotted

```bash
.venv/bin/python -m bf_jax.no_such_module --workdir runs/x
python -m bf_jax.bench --grid cpu --no_such_flag 3 && launch/local.sh --no-such-option
python -m bf_jax.main --config configs/no_such_config.py --workdir runs/x
python -m bf_jax.main --config configs/digits_lt.py:no_such_arg=1 --workdir runs/x
python -m bf_jax.main --config=configs/digits_lt.py:bf=maybe --workdir runs/x
python -m bf_jax.main --config configs/digits_lt.py:smoke \\
  --workdir runs/x --config.optim.no_such_field=1
for bf in off sometimes; do
  python -m bf_jax.main --config configs/digits_lt.py:bf=$bf --workdir runs/$bf
done
make no_such_target && launch/no_such_script.sh --dry-run  # see docs/no_such_page.md
CONFIG=configs/digits_lt.py:smoke sbatch launch/gpu_slurm.sbatch --config.bf.no_such_knob=2
```

```console
$ python tools/no_such_tool.py --out DIR
prints: this output line is not a command, python -m bf_jax.not_checked
```

Inline: `make no_such_inline_target`, `pip install -r requirements.txt -e '.[no_such_extra]'`,
`--config.data.no_such_inline_field`, `bf.no_such_prose_field`, `bf_jax.tasks.no_such_function`,
`tests/no_such_test.py`, [a link](no_such_page.md), [an anchor](#no-such-heading).

```python
from bf_jax import no_such_name
```

```text
bf_jax/no_such_file.py      a listing line naming a file that is gone
```

Fine, so not reported: `python -m bf_jax.main --config configs/digits_lt.py:bf=off,seed=3`,
`make demo`, `--config.bf.lr_mult=0.1`, `bf.{enabled, scope}`, `bf_jax.tasks.run`.
"""


def test_the_checker_reports_each_kind_of_rot(tmp_path):
  page = tmp_path / "rotted.md"
  page.write_text(FABRICATED_PAGE)
  problems = "\n".join(check_markdown("rotted.md", FABRICATED_PAGE, page))
  expected = [
      ("rotted.md:4:", "no module bf_jax.no_such_module"),
      ("rotted.md:5:", "bf_jax/bench/__main__.py takes no flag --no_such_flag"),
      ("rotted.md:5:", "launch/local.sh takes no flag --no-such-option"),
      ("rotted.md:6:", "config file configs/no_such_config.py does not exist"),
      ("rotted.md:7:", "get_config('no_such_arg=1') fails"),
      ("rotted.md:8:", "get_config('bf=maybe') fails"),
      ("rotted.md:9:", "no field 'optim.no_such_field'"),
      ("rotted.md:12:", "get_config('bf=sometimes') fails"),
      ("rotted.md:14:", "no target 'no_such_target'"),
      ("rotted.md:14:", "launch/no_such_script.sh does not exist"),
      ("rotted.md:14:", "(in the comment) docs/no_such_page.md does not exist"),
      ("rotted.md:15:", "no field 'bf.no_such_knob'"),
      ("rotted.md:19:", "tools/no_such_tool.py does not exist"),
      ("rotted.md:23:", "no target 'no_such_inline_target'"),
      ("rotted.md:23:", "pip extra 'no_such_extra'"),
      ("rotted.md:23:", "requirements.txt does not exist"),
      ("rotted.md:24:", "field 'data.no_such_inline_field'"),
      ("rotted.md:24:", "field 'bf.no_such_prose_field'"),
      ("rotted.md:24:", "defines no 'no_such_function'"),
      ("rotted.md:25:", "tests/no_such_test.py does not exist"),
      ("rotted.md:25:", "link no_such_page.md"),
      ("rotted.md:25:", "has no heading #no-such-heading"),
      ("rotted.md:28:", "defines no 'no_such_name'"),
      ("rotted.md:32:", "listing: bf_jax/no_such_file.py does not exist"),
  ]
  for where, what in expected:
    assert any(line.startswith(where) and what in line for line in problems.splitlines()), (
        f"expected a report at {where} containing {what!r}; got:\n{problems}")
  assert len(problems.splitlines()) == len(expected), problems
  assert "bf_jax.not_checked" not in problems  # console output is not a command
