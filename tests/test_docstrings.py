"""funconv's docstrings: every public name has one, with an example; the examples are doctests; the API reference
(docs/api/) has an entry for every public name."""

import ast
import doctest
import functools
import importlib
import inspect
import pathlib
import pkgutil
import re

import pytest

import funconv

MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(funconv.__path__, "funconv."))
PACKAGES = ["funconv", "funconv.ops", "funconv.models", "funconv.train", "funconv.data", "funconv.viz"]
API_PAGES = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api"


@functools.cache
def attribute_docstrings(module):
  """`{name: docstring}` of the module-level assignments followed by a string (how layer values such as
  `funconv.Relu`, namedtuple instances, are documented; mkdocstrings reads them the same way)."""
  body = ast.parse(inspect.getsource(module)).body
  docs = {}
  for statement, following in zip(body, body[1:]):
    if (
      isinstance(statement, ast.Assign)
      and len(statement.targets) == 1
      and isinstance(statement.targets[0], ast.Name)
      and isinstance(following, ast.Expr)
      and isinstance(following.value, ast.Constant)
      and isinstance(following.value.value, str)
    ):
      docs[statement.targets[0].id] = inspect.cleandoc(following.value.value)
  return docs


def docstring(package, name):
  """The docstring documenting `package.name`: its own, or the attribute docstring where it is assigned."""
  obj = getattr(importlib.import_module(package), name)
  if inspect.isfunction(obj) or inspect.isclass(obj):
    return inspect.getdoc(obj) or ""
  for module_name in MODULES:
    found = attribute_docstrings(importlib.import_module(module_name)).get(name)
    if found is not None and getattr(importlib.import_module(module_name), name, None) is obj:
      return found
  return ""


PUBLIC = [
  (package, name)
  for package in PACKAGES
  for name in importlib.import_module(package).__all__
  if not inspect.ismodule(getattr(importlib.import_module(package), name))
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # examples that write files write them here
  module = importlib.import_module(module_name)
  flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
  tests = doctest.DocTestFinder().find(module)
  parser = doctest.DocTestParser()
  tests += [
    parser.get_doctest(text, dict(vars(module)), f"{module_name}.{name}", module.__file__, 0)
    for name, text in attribute_docstrings(module).items()
  ]
  runner = doctest.DocTestRunner(optionflags=flags)
  for test in tests:
    runner.run(test)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module_name} failed (output above)"


@pytest.mark.parametrize("package,name", PUBLIC, ids=[f"{p}.{n}" for p, n in PUBLIC])
def test_public_name_has_docstring_with_example(package, name):
  text = docstring(package, name)
  assert text, f"{package}.{name} has no docstring"
  assert ">>>" in text, f"{package}.{name}'s docstring has no example"


def test_every_public_name_has_a_reference_entry():
  """A package's directive lists its members, except those named as a submodule (`funconv.ops.conv`, the function,
  shares its name with the module defining it): those need a directive of their own."""
  directives = set(re.findall(r"^::: ([\w.]+)", "".join(p.read_text() for p in API_PAGES.glob("*.md")), re.M))
  missing = []
  for package, name in PUBLIC:
    obj = getattr(importlib.import_module(package), name)
    if f"{package}.{name}" in MODULES:
      entries = {f"{obj.__module__}.{name}"}
    else:
      entries = {f"{package}.{name}"} | ({package} if package != "funconv" else set())
    if not entries & directives:
      missing.append(f"{package}.{name}")
  assert not missing, f"no entry in docs/api/ for {missing}"
