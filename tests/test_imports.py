"""Imports run one way: experiments.runtime <- arch, objectives <- eval <- experiments (DESIGN.md).

Read from the source (AST), so an import inside a function counts as much as one at the top.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("arch", "objectives", "eval", "experiments", "benchmarks")
RUNTIME = "experiments.runtime"
# What each package may import of the others (itself always); experiments.runtime is below all.
ALLOWED = {
    "arch": {RUNTIME},
    "objectives": {RUNTIME},
    "eval": {RUNTIME, "objectives", "arch"},
    "experiments": {RUNTIME, "eval", "objectives", "arch"},
    "benchmarks": {RUNTIME, "experiments", "eval", "objectives", "arch"},
    RUNTIME: set(),
}


def _owner(module: str) -> str:
  return RUNTIME if module == RUNTIME or module.startswith(RUNTIME + ".") else module.split(".")[0]


def _module_of(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path):
  """(line, imported module) for every import of a project package in the file."""
  module = _module_of(path)
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against the file's package
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
      else:
        prefix = node.module or ""
      names = [f"{prefix}.{a.name}" for a in node.names] if prefix in PACKAGES or any(
          prefix.startswith(p + ".") for p in PACKAGES) else [prefix]
    else:
      continue
    for name in names:
      if name.split(".")[0] in PACKAGES:
        yield node.lineno, name


def _violations(paths):
  out = []
  for path in paths:
    owner = _owner(_module_of(path))
    for line, name in _imports(path):
      target = _owner(name)
      if target != owner and target not in ALLOWED[owner]:
        out.append(f"{path.relative_to(REPO)}:{line} ({owner}) imports {name} ({target})")
  return out


def test_imports_run_one_way():
  paths = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
  assert len(paths) > 50
  assert _violations(paths) == []


def test_the_check_catches_upward_and_circular_imports(tmp_path, monkeypatch):
  """The rule itself: a file that imports upward, or the reverse direction, is reported."""
  monkeypatch.setitem(globals(), "REPO", tmp_path)
  cases = {
      "arch/bad.py": "from experiments import loop\n",
      "objectives/bad.py": "def f():\n  import eval.templates\n",
      "eval/fine.py": "from objectives import plays\nfrom experiments.runtime import cli\n",
      "experiments/runtime/bad.py": "import arch.models\n",
  }
  for rel, text in cases.items():
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(text)
  found = _violations([tmp_path / rel for rel in cases])
  assert [v.split(":")[0] for v in found] == [
      "arch/bad.py", "objectives/bad.py", "experiments/runtime/bad.py"]


@pytest.mark.parametrize("package", ["arch", "objectives", "eval", "experiments.runtime"])
def test_each_package_states_its_import_direction(package):
  init = REPO / package.replace(".", "/") / "__init__.py"
  assert "import" in ast.get_docstring(ast.parse(init.read_text())).lower()
