"""Faults in training: runs SIGKILLed at random points (checkpoint writes included) resume bit for bit;
damaged checkpoints fail clearly and fall back; a full disk loses nothing; commits are fsynced; the same
seed gives the same bits in two processes."""

import collections
import contextlib
import functools
import importlib
import itertools
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings

import jax
import matplotlib
import numpy as np
import optax
import pytest

import funconv as fc
from funconv import train
from funconv.train import checkpoint
from tests.train.test_train import assert_same_bits, tiny_data, tiny_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAUSE = 0.02  # seconds a child sleeps before each fsync and rename of a write the parent aims a kill at
TIMEOUT = 120  # seconds without a word from a child before the test gives up on it


def run(out_dir, pause=0.0):
  """The run under test, in a child process: `fit` resumed from whatever `out_dir` holds, checkpointing every
  step. Writes `save NAME STEP` as a checkpoint write of `out_dir/NAME` starts and `committed NAME STEP` once orbax
  has renamed the step into place, and, where `pause`, `io rename` before each of orbax's renames (a step and its
  items), sleeping `pause` s there so that a kill can land inside the commit."""

  def say(*words):  # one os.write: a kill never leaves half a line (orbax renames from its own thread)
    os.write(1, (" ".join(map(str, words)) + "\n").encode())

  def reporting_save(self, train_state, position, step=None, save=checkpoint.Checkpoints.save):
    say("save", self.directory.name, int(train_state.step) if step is None else step)
    save(self, train_state, position, step)

  def reporting_rename(source, target, rename=os.rename):
    if pause:
      say("io", "rename")
      time.sleep(pause)
    rename(source, target)
    if pathlib.Path(target).name.isdigit():
      say("committed", pathlib.Path(target).parent.name, pathlib.Path(target).name)

  checkpoint.Checkpoints.save, os.rename = reporting_save, reporting_rename
  train.fit(
    tiny_model(),
    tiny_data(),
    optax.adam(1e-2),
    epochs=2,
    batch_size=8,
    seed=0,
    out_dir=out_dir,
    checkpoint_every=1,
    resume=True,
    progress=False,
  )


def serve(cache_dir):
  """A fork server: imports JAX and funconv once (most of a short child's life otherwise), then forks one `run`
  per `OUT_DIR PAUSE` line on stdin, answering `pid PID` and, once the child is gone, `exit STATUS`."""
  jax.config.update("jax_compilation_cache_dir", cache_dir)  # children compile the steps once between them
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  matplotlib.use("Agg")
  importlib.import_module("matplotlib.pyplot")  # for the curves a finishing child draws
  warnings.simplefilter("ignore", DeprecationWarning)  # fork() beside NumPy's idle BLAS thread, before JAX starts
  for line in sys.stdin:
    out_dir, pause = line.split()
    pid = os.fork()
    if pid == 0:
      try:
        run(out_dir, float(pause))
        os._exit(0)
      except BaseException:
        traceback.print_exc()
        os._exit(1)
    print("pid", pid, flush=True)
    print("exit", os.waitpid(pid, 0)[1], flush=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  """`(send, receive)` to a fork server: `send(out_dir, pause)`, `receive(timeout)` -> the next line's words."""
  cache = tmp_path_factory.mktemp("jax_cache")
  proc = subprocess.Popen(
    [sys.executable, "-c", f"from tests.train.test_faults import serve; serve({str(cache)!r})"],
    cwd=ROOT,
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
    bufsize=1,
  )
  lines = queue.Queue()
  threading.Thread(target=lambda: [lines.put(line.split()) for line in proc.stdout], daemon=True).start()
  yield lambda out_dir, pause: proc.stdin.write(f"{out_dir} {pause}\n"), lambda timeout: lines.get(timeout=timeout)
  proc.stdin.close()
  proc.wait(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """Out directories of two never-killed runs, each in a fresh process (no fork, no compilation cache)."""
  outs = [tmp_path_factory.mktemp(f"uninterrupted{i}") for i in range(2)]
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", f"from tests.train.test_faults import run; run({str(out)!r})"],
      cwd=ROOT,
      stdout=subprocess.DEVNULL,
    )
    for out in outs
  ]
  assert [proc.wait(timeout=600) for proc in procs] == [0, 0]
  return outs


@functools.cache
def template():
  """The runs' train state, for loading theirs (not at import: the fork server must not start JAX's runtime)."""
  return train.init_train_state(tiny_model(), optax.adam(1e-2), (6, 6, 1), 0)


def newest(out, name="checkpoints"):
  """The train state of a run's newest checkpoint in `out/name`."""
  return checkpoint.load(out / name, template())[0]


def test_the_same_seed_gives_bit_identical_runs_in_two_processes(uninterrupted):
  for name in ("checkpoints", "best"):
    assert_same_bits(*(newest(out, name) for out in uninterrupted))


def supervise(server, out, pause, trigger):
  """Run one child on `out` through the fork server and SIGKILL it `trigger(words)` seconds after the first of
  its lines (`pid PID`, `save NAME STEP`, `io rename`, ...) for which that is not None. Returns the exit code, the
  steps `{NAME: STEP}` being written (not yet committed) when it ended, and the last step it committed to
  `checkpoints`."""
  send, receive = server
  send(out, pause)
  pid = deadline = saved = None
  writing = {}
  while True:
    try:
      words = receive(TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic()))
    except queue.Empty:
      assert deadline is not None, f"a child training in {out} was silent for {TIMEOUT} s"
      with contextlib.suppress(ProcessLookupError):  # it may have finished first
        os.kill(pid, signal.SIGKILL)
      deadline, trigger = None, lambda words: None
      continue
    if words[0] == "exit":
      return os.waitstatus_to_exitcode(int(words[1])), writing, saved
    pid = int(words[1]) if words[0] == "pid" else pid
    if words[0] == "save":
      writing[words[1]] = int(words[2])
    if words[0] == "committed":
      writing.pop(words[1], None)
      saved = int(words[2]) if words[1] == "checkpoints" else saved
    delay = trigger(words) if deadline is None else None
    deadline = deadline if delay is None else time.monotonic() + delay


def random_kill(rng):
  """`(pause, trigger)` for `supervise`: a kill at a random time after the start, or after the first write
  started, or inside one of the first commits (just before or after one of orbax's renames)."""
  mode, target, renames = rng.integers(3), rng.integers(1, 9), itertools.count(1)

  def trigger(words):
    if mode == 0 and words[0] == "pid":
      return rng.uniform(0, 1.5)
    if mode == 1 and words[0] == "save":
      return rng.uniform(0, 0.2)
    if mode == 2 and words[0] == "io" and next(renames) == target:
      return rng.uniform(0, 1.5 * PAUSE)

  return PAUSE if mode == 2 else 0.0, trigger


def assert_run_files(out):
  """Only the run's files, and in its checkpoint directories only committed steps and orbax's temporary
  directories (deleted by the next run)."""
  assert {p.name for p in out.iterdir()} <= {"checkpoints", "best", "metrics.json", "curves.png"}
  for name in ("checkpoints", "best"):
    for p in (out / name).glob("*") if (out / name).exists() else ():
      assert p.name.isdigit() or ".orbax-checkpoint-tmp" in p.name, p


# SIGKILLs that must land, in all: 50 under `-m slow`, 6 in the default run (about 30 s on 2 cores).
@pytest.mark.parametrize("kills_wanted", [6, pytest.param(50, marks=pytest.mark.slow)])
def test_runs_killed_at_random_resume_bit_for_bit(server, uninterrupted, tmp_path, kills_wanted):
  """SIGKILL children at random until `kills_wanted` kills have landed; after each, the newest committed checkpoint
  loads (without falling back); each run, resumed until a child finishes, ends with the uninterrupted run's bits."""
  rng = np.random.default_rng(0)
  kills, rounds = collections.Counter(), 0
  while kills.total() < kills_wanted:
    out, newest_step = tmp_path / f"run{rounds}", None  # the step of the newest committed checkpoint
    while True:
      pause, trigger = random_kill(rng) if kills.total() < kills_wanted else (0.0, lambda words: None)
      code, writing, saved = supervise(server, out, pause, trigger)
      if code == 0:
        break
      assert code == -signal.SIGKILL, f"a child failed with exit code {code} (its traceback is in stderr)"
      kills[
        "while a checkpoint was written"
        if writing
        else "before the child's first write"
        if saved is None
        else "between writes"
      ] += 1
      with warnings.catch_warnings():
        warnings.simplefilter("error")  # falling back past a damaged step would be a loss
        restored = checkpoint.Checkpoints(out / "checkpoints", read_only=True).load(template())
      step = None if restored is None else int(restored[0].step)
      assert step == (newest_step if saved is None else saved) or writing.get("checkpoints") == step
      assert_run_files(out)
      newest_step = step
    rounds += 1
    for name in ("checkpoints", "best"):
      assert_same_bits(newest(out, name), newest(uninterrupted[0], name))
      assert all(p.name.isdigit() for p in (out / name).iterdir())
  print(
    f"{kills.total()} SIGKILLs landed ({dict(kills)}) in {rounds} runs, each resumed to the uninterrupted run's bits"
  )
  assert kills["while a checkpoint was written"] >= kills_wanted // 5


def test_resuming_past_a_damaged_checkpoint_falls_back_and_reproduces_the_run(server, uninterrupted, tmp_path):
  sixth = lambda words: 0.0 if words[:3] == ["committed", "checkpoints", "6"] else None
  code, _, _ = supervise(server, tmp_path, 0.0, sixth)
  assert code == -signal.SIGKILL
  ckpts = checkpoint.Checkpoints(tmp_path / "checkpoints", read_only=True)
  step = ckpts.steps()[-1]  # 6 or a little later, each step having saved one
  damaged = max((p for p in ckpts.path(step).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
  with pytest.warns(
    UserWarning, match=f"checkpoint {ckpts.path(step)} is truncated or corrupted.*loading the previous checkpoint"
  ):
    assert int(ckpts.load(template())[0].step) == step - 1
  assert supervise(server, tmp_path, 0.0, lambda words: None)[0] == 0
  for name in ("checkpoints", "best"):
    assert_same_bits(newest(tmp_path, name), newest(uninterrupted[0], name))


# Damaged copies of one step per file of it: three truncations and this many flipped bytes (every byte is too
# slow here: about 20 KB in 15 files, 40 ms a restore).
@pytest.mark.parametrize("flips_per_file", [4, pytest.param(64, marks=pytest.mark.slow)])
def test_truncated_and_flipped_checkpoint_files_fail_clearly_or_change_nothing(tmp_path, flips_per_file):
  state = train.init_train_state(fc.Dense(2), optax.sgd(0.1), (3,), 0)
  good = checkpoint.save(tmp_path / "good", state, dict(epoch=1))
  rng, outcomes = np.random.default_rng(0), collections.Counter()
  files = sorted(p.relative_to(good) for p in good.rglob("*") if p.is_file())
  for n, name in enumerate(files):
    data = (good / name).read_bytes()
    flips = rng.choice(len(data), min(flips_per_file, len(data)), replace=False) if data else []
    for k, damaged in enumerate(
      [data[:cut] for cut in sorted({0, len(data) // 2, max(len(data) - 1, 0)})]
      + [data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :] for i in flips]
    ):
      step = tmp_path / f"copy{n}_{k}" / "0"
      shutil.copytree(good, step)
      (step / name).write_bytes(damaged)
      try:
        loaded, position = checkpoint.load(step, state)
      except ValueError as err:
        assert f"checkpoint {step} is truncated or corrupted" in str(err)
        outcomes["clear error"] += 1
      else:  # a byte that the reader ignores (a time stamp, a commit note)
        assert position == dict(epoch=1)
        assert_same_bits(loaded, state)
        outcomes["loaded unchanged"] += 1
      shutil.rmtree(step.parent)
  print(f"{outcomes.total()} damaged copies of {len(files)} files: {dict(outcomes)}")


def test_the_newest_loadable_checkpoint_is_loaded(tmp_path):
  tree = {"w": np.zeros(3, np.float32)}
  ckpts = checkpoint.Checkpoints(tmp_path)
  assert ckpts.load(tree) is None
  for n in (1, 2):
    ckpts.save(tree, dict(n=n), step=n)
  ckpts.wait()
  assert ckpts.steps() == [1, 2] and ckpts.load(tree)[1] == dict(n=2)
  (ckpts.path(2) / "meta" / "metadata").write_bytes(b"{")
  with pytest.warns(UserWarning, match=f"{ckpts.path(2)} is truncated or corrupted.*loading the previous checkpoint"):
    assert ckpts.load(tree)[1] == dict(n=1)
  shutil.rmtree(ckpts.path(1) / "state")
  with pytest.raises(ValueError, match=f"checkpoint {ckpts.path(2)} is truncated or corrupted"):
    ckpts.load(tree)
  with pytest.raises(FileNotFoundError, match=f"checkpoint {ckpts.path(3)} does not exist"):
    ckpts.load(tree, step=3)


def test_a_write_that_fails_midway_loses_nothing(tmp_path):
  """A file-size limit (RLIMIT_FSIZE, as a full disk would) fails tensorstore's write of a step's arrays: the error
  reaches the caller, the step is not committed, the steps before it load unchanged."""
  script = textwrap.dedent(f"""
      import resource, signal
      import numpy as np
      from funconv.train import checkpoint
      ckpts = checkpoint.Checkpoints({str(tmp_path)!r})
      for n in (1, 2):
          ckpts.save({{"w": np.full(3, n, np.float32)}}, dict(n=n), step=n)
      ckpts.wait()
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
      resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
      noise = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)  # zstd cannot shrink it
      try:
          ckpts.save({{"w": noise}}, dict(n=3), step=3)
          ckpts.wait()
      except Exception as err:
          print("failed:", type(err).__name__, str(err).splitlines()[0][:200])
  """)
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0 and "failed:" in done.stdout, done.stdout + done.stderr
  ckpts = checkpoint.Checkpoints(tmp_path)
  assert ckpts.steps() == [1, 2]
  tree, position = ckpts.load({"w": np.zeros(3, np.float32)})
  assert position == dict(n=2) and np.all(np.asarray(tree["w"]) == 2)
  ckpts.save({"w": np.full(3, 3, np.float32)}, dict(n=3), step=3)  # the write again, with room for it
  ckpts.wait()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "3"]  # the failed write's temporary directory deleted


def test_a_commit_is_durable(tmp_path, monkeypatch):
  """Once `wait` returns, every file of the step and the directories holding them were fsynced after orbax
  renamed the step into place: the commit survives a power cut, not only a killed process."""
  events, fsync, rename = [], os.fsync, os.rename
  monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_ino)) or fsync(fd))
  monkeypatch.setattr(
    os, "rename", lambda src, dst: events.append(("rename", pathlib.Path(dst).name)) or rename(src, dst)
  )
  step = checkpoint.save(tmp_path, {"w": np.ones(3)}, {}, step=7)
  commit = events.index(("rename", "7"))
  synced = {ino for what, ino in events[commit:] if what == "fsync"}
  on_disk = [step, tmp_path, *step.rglob("*")]
  assert {p.stat().st_ino for p in on_disk} <= synced
