"""Runs the Python code blocks of Markdown pages, so that no example in the docs can rot.

Every fenced block whose info string is exactly ``python`` runs, in page order, in one namespace
per page (a page reads like a notebook), in a process of its own per page: forked from a server
that has imported JAX, funconv, optax and matplotlib once (a fresh interpreter's imports were a
fifth of a short page's time) but started no JAX backend, so a page may still set ``XLA_FLAGS``
before its first computation. A failing block's traceback names the page and the line in it.

Blocks that draw write their figures to ``figures/NAME.png`` relative to the working directory,
which ``figures/`` exists in; blocks that read benchmark results read ``experiments/results/`` there,
as from the repository's root (the runner links it). The tests run each page in a temporary directory; regenerate the
committed figures by running pages in their own directory::

    python tests/doc_pages.py docs/tour/*.md            # writes docs/tour/figures/*.png
"""

import argparse
import atexit
import functools
import os
import pathlib
import re
import subprocess
import sys
import traceback

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


def _serve():
  """The fork server: imports once, then for each `PAGE WORKDIR` line on stdin forks a child that runs the page in
  `WORKDIR` with its output in `WORKDIR/page-output.txt`, and answers the child's exit status."""
  import warnings

  import funconv  # noqa: F401
  import matplotlib.pyplot  # noqa: F401
  import optax  # noqa: F401

  warnings.simplefilter("ignore", DeprecationWarning)  # fork() beside NumPy's idle BLAS threads, before JAX starts
  for line in sys.stdin:
    page, workdir = line.rstrip("\n").split("\t")
    pid = os.fork()
    if pid == 0:
      os.chdir(workdir)
      fd = os.open("page-output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
      os.dup2(fd, 1)
      os.dup2(fd, 2)
      try:
        _exec_page(page)
        code = 0
      except BaseException:
        traceback.print_exc()
        code = 1
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)


@functools.cache
def _server():
  """This process's fork server (one per test worker), with the environment a reader's machine has."""
  # Without the simulated devices the tests' conftest adds for the data-parallel tests.
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", "")).strip()
  env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT), "XLA_FLAGS": flags}
  server = subprocess.Popen(
    [sys.executable, __file__, "--serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
  )
  atexit.register(server.stdin.close)
  return server


def run_page(page, workdir):
  """Runs `page`'s blocks in a process of its own with `workdir` as working directory.

  Returns a ``subprocess.CompletedProcess`` (stdout and stderr together in ``stdout``).
  """
  workdir = pathlib.Path(workdir).resolve()
  (workdir / "figures").mkdir(parents=True, exist_ok=True)
  experiments = workdir / "experiments"
  linked = not experiments.exists()
  if linked:
    experiments.symlink_to(ROOT / "experiments", target_is_directory=True)
  server = _server()
  try:
    server.stdin.write(f"{pathlib.Path(page).resolve()}\t{workdir}\n")
    server.stdin.flush()
    code = int(server.stdout.readline())
  finally:
    if linked:
      experiments.unlink()
  output = workdir / "page-output.txt"
  text = output.read_text()
  output.unlink()
  return subprocess.CompletedProcess([str(page)], code, text)


def main(argv=None):
  parser = argparse.ArgumentParser(
    description="Run Markdown pages' python blocks in the page's own directory (writing its figures/)."
  )
  parser.add_argument("pages", nargs="*", type=pathlib.Path)
  parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.serve:
    _serve()
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
