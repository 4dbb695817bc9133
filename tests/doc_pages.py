"""Runs the Python code blocks of Markdown pages, so that no example in the docs can rot.

Every fenced block whose info string is exactly ``python`` runs, in page order, in one namespace
per page (a page reads like a notebook), in a fresh interpreter per page (a page may set
environment variables such as ``XLA_FLAGS`` before its first ``import jax``). A failing block's
traceback names the page and the line in it.

Blocks that draw write their figures to ``figures/NAME.png`` relative to the working directory,
which ``figures/`` exists in; blocks that read benchmark results read ``experiments/results/`` there,
as from the repository's root (the runner links it). The tests run each page in a temporary directory; regenerate the
committed figures by running pages in their own directory::

    python tests/doc_pages.py docs/tour/*.md            # writes docs/tour/figures/*.png
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md")])


def pages_with_code(folder):
  """The pages directly in `folder` (relative to the repository) that have python blocks, for the tests."""
  return [page for page in PAGES if page.parent == ROOT / folder and code_blocks(page.read_text())]


_FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def code_blocks(text):
  """The ``(first_line, source)`` of each ``python`` block of a Markdown text, in order."""
  blocks = []
  for match in _FENCE.finditer(text):
    if match.group("info").strip() != "python":
      continue
    first_line = text.count("\n", 0, match.start("body")) + 1
    indent = len(match.group("indent"))
    body = "".join(line[indent:] for line in match.group("body").splitlines(keepends=True))
    blocks.append((first_line, body))
  return blocks


def _exec_page(page):
  """Executes `page`'s blocks here, each compiled under the page's name and its own line numbers."""
  namespace = {"__name__": "__main__"}
  for first_line, body in code_blocks(pathlib.Path(page).read_text()):
    exec(compile("\n" * (first_line - 1) + body, str(page), "exec"), namespace)


def run_page(page, workdir):
  """Runs `page`'s blocks in a fresh interpreter with `workdir` as working directory.

  Returns the ``subprocess.CompletedProcess`` (stdout and stderr together in ``stdout``).
  """
  workdir = pathlib.Path(workdir)
  (workdir / "figures").mkdir(parents=True, exist_ok=True)
  experiments = workdir / "experiments"
  linked = not experiments.exists()
  if linked:
    experiments.symlink_to(ROOT / "experiments", target_is_directory=True)
  # As on a reader's machine: without the simulated devices the tests' conftest adds for the data-parallel tests.
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", "")).strip()
  env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT), "XLA_FLAGS": flags}
  try:
    return subprocess.run(
      [sys.executable, __file__, "--exec", str(pathlib.Path(page).resolve())],
      cwd=workdir,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
  finally:
    if linked:
      experiments.unlink()


def main(argv=None):
  parser = argparse.ArgumentParser(
    description="Run Markdown pages' python blocks in the page's own directory (writing its figures/)."
  )
  parser.add_argument("pages", nargs="*", type=pathlib.Path)
  parser.add_argument("--exec", dest="exec_page", type=pathlib.Path, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.exec_page:
    _exec_page(args.exec_page)
    return 0
  failed = 0
  for page in args.pages:
    result = run_page(page, page.resolve().parent)
    print(f"{page}: {'ok' if result.returncode == 0 else 'FAILED'}")
    if result.returncode:
      print(result.stdout)
      failed += 1
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
