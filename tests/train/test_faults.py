"""Faults in training: runs SIGKILLed at random points (checkpoint writes included) resume bit for bit;
damaged checkpoints fail clearly and fall back; a full disk loses nothing; commits are fsynced; the same
seed gives the same bits in two processes."""

import collections
import contextlib
import errno
import importlib
import itertools
import os
import pathlib
import queue
import signal
import subprocess
import sys
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
from tests.train.test_train import tiny_data, tiny_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAUSE = 0.02  # seconds a child sleeps before each fsync and rename of a write the parent aims a kill at
TIMEOUT = 120  # seconds without a word from a child before the test gives up on it


def run(out_dir, pause=0.0):
  """The run under test, in a child process: `fit` resumed from whatever `out_dir` holds, checkpointing every
  step. Writes `save NAME STEP` and `saved NAME STEP` around each checkpoint write on stdout and, where `pause`,
  `io FN` before each fsync and rename, sleeping `pause` s there so that a kill can land inside the write."""

  def say(*words):  # one os.write: a kill never leaves half a line
    os.write(1, (" ".join(map(str, words)) + "\n").encode())

  def reporting_save(path, train_state, position, save=checkpoint.save):
    say("save", pathlib.Path(path).name, int(train_state.step))
    save(path, train_state, position)
    say("saved", pathlib.Path(path).name, int(train_state.step))

  def paused(*args, fn):
    say("io", fn.__name__)
    time.sleep(pause)
    return fn(*args)

  checkpoint.save = reporting_save
  if pause:
    os.fsync = lambda *args, fn=os.fsync: paused(*args, fn=fn)
    os.replace = lambda *args, fn=os.replace: paused(*args, fn=fn)
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


def leaves(path):
  """The train state's arrays as stored in a checkpoint file, in tree order."""
  with np.load(path) as archive:
    return [archive[f"leaf_{i}"] for i in range(len(archive.files) - 1)]


def assert_same_bits(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_the_same_seed_gives_bit_identical_runs_in_two_processes(uninterrupted):
  for name in ("checkpoint.npz", "best.npz"):
    assert_same_bits(*(leaves(out / name) for out in uninterrupted))


def supervise(server, out, pause, trigger):
  """Run one child on `out` through the fork server and SIGKILL it `trigger(words)` seconds after the first of
  its lines (`pid PID`, `save NAME STEP`, `io FN`, ...) for which that is not None. Returns the exit code, the
  write `(NAME, STEP)` it was inside when it ended (None if none), and the last step it saved to checkpoint.npz."""
  send, receive = server
  send(out, pause)
  pid = deadline = writing = saved = None
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
    writing = (words[1], int(words[2])) if words[0] == "save" else None if words[0] == "saved" else writing
    saved = int(words[2]) if words[:2] == ["saved", "checkpoint.npz"] else saved
    delay = trigger(words) if deadline is None else None
    deadline = deadline if delay is None else time.monotonic() + delay


def random_kill(rng):
  """`(pause, trigger)` for `supervise`: a kill at a random time after the start, or after the first write,
  or inside one of the first writes (just before one of their fsyncs and renames, or just after)."""
  mode, target, ios = rng.integers(3), rng.integers(1, 9), itertools.count(1)

  def trigger(words):
    if mode == 0 and words[0] == "pid":
      return rng.uniform(0, 1.5)
    if mode == 1 and words[0] == "save":
      return rng.uniform(0, 0.2)
    if mode == 2 and words[0] == "io" and next(ios) == target:
      return rng.uniform(0, 1.5 * PAUSE)

  return PAUSE if mode == 2 else 0.0, trigger


FILES = {
  "checkpoint.npz",
  "checkpoint.prev.npz",
  "best.npz",
  "best.prev.npz",
  ".checkpoint.npz.tmp",
  ".best.npz.tmp",
  "metrics.json",
  "curves.png",
}


# SIGKILLs that must land, in all: 50 under `-m slow`, 6 in the default run (about 20 s on 2 cores).
@pytest.mark.parametrize("kills_wanted", [6, pytest.param(50, marks=pytest.mark.slow)])
def test_runs_killed_at_random_resume_bit_for_bit(server, uninterrupted, tmp_path, kills_wanted):
  """SIGKILL children at random until `kills_wanted` kills have landed; after each, the newest complete checkpoint loads
  (without falling back); each run, resumed until a child finishes, ends with the uninterrupted run's bits."""
  rng = np.random.default_rng(0)
  template = train.init_train_state(tiny_model(), optax.adam(1e-2), (6, 6, 1), 0)
  kills, rounds = collections.Counter(), 0
  while kills.total() < kills_wanted:
    out, newest = tmp_path / f"run{rounds}", None  # newest: the step of the newest complete checkpoint.npz
    while True:
      pause, trigger = random_kill(rng) if kills.total() < kills_wanted else (0.0, lambda words: None)
      code, writing, saved = supervise(server, out, pause, trigger)
      if code == 0:
        break
      assert code == -signal.SIGKILL, f"a child failed with exit code {code} (its traceback is in stderr)"
      kills[
        "inside a checkpoint write"
        if writing
        else "before the child's first write"
        if saved is None
        else "between writes"
      ] += 1
      with warnings.catch_warnings():
        warnings.simplefilter("error")  # falling back past a damaged file would be a loss
        restored = checkpoint.load_latest(out / "checkpoint.npz", template)
      step = None if restored is None else int(restored[0].step)
      assert step == (newest if saved is None else saved) or writing == ("checkpoint.npz", step)
      assert set(os.listdir(out)) <= FILES
      newest = step
    rounds += 1
    for name in ("checkpoint.npz", "best.npz"):
      assert_same_bits(leaves(out / name), leaves(uninterrupted[0] / name))
    assert not list(out.glob(".*.tmp"))
  print(
    f"{kills.total()} SIGKILLs landed ({dict(kills)}) in {rounds} runs, each resumed to the uninterrupted run's bits"
  )
  assert kills["inside a checkpoint write"] >= kills_wanted // 5


def test_resuming_past_a_damaged_checkpoint_falls_back_and_reproduces_the_run(server, uninterrupted, tmp_path):
  path, template = tmp_path / "checkpoint.npz", train.init_train_state(tiny_model(), optax.adam(1e-2), (6, 6, 1), 0)
  code, _, _ = supervise(server, tmp_path, 0.0, lambda words: 0.0 if words[:3] == ["saved", path.name, "6"] else None)
  assert code == -signal.SIGKILL
  step = int(checkpoint.load(path, template)[0].step)  # 6 or a little later, each step having saved one
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  with pytest.warns(UserWarning, match=f"checkpoint {path} is truncated or corrupted.*loading the previous checkpoint"):
    assert int(checkpoint.load_latest(path, template)[0].step) == step - 1
  assert supervise(server, tmp_path, 0.0, lambda words: None)[0] == 0
  for name in ("checkpoint.npz", "best.npz"):
    assert_same_bits(leaves(tmp_path / name), leaves(uninterrupted[0] / name))


def test_every_truncation_and_byte_flip_of_a_checkpoint_fails_clearly_or_changes_nothing(tmp_path):
  path = tmp_path / "ckpt.npz"
  state = train.init_train_state(fc.Dense(2), optax.sgd(0.1), (3,), 0)  # small: two cases per byte
  checkpoint.save(path, state, dict(epoch=1))
  good = path.read_bytes()
  damaged = [good[:n] for n in range(len(good))] + [
    good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1 :] for i in range(len(good))
  ]
  outcomes = collections.Counter()
  for i, data in enumerate(damaged):
    path = tmp_path / f"{i}.npz"  # a new file each time: rewriting one is slow on ext4 (a flush at close)
    path.write_bytes(data)
    try:
      loaded, position = checkpoint.load(path, state)
    except ValueError as err:
      assert f"checkpoint {path} is truncated or corrupted" in str(err)
      outcomes["clear error"] += 1
    else:  # a flip in a field the reader ignores (a time stamp, a version)
      assert position == dict(epoch=1)
      assert_same_bits(checkpoint._leaves(loaded), checkpoint._leaves(state))
      outcomes["loaded unchanged"] += 1
    path.unlink()
  print(f"{len(damaged)} damaged checkpoints: {dict(outcomes)}")


def test_the_latest_loadable_checkpoint_is_loaded(tmp_path):
  path, tree = tmp_path / "ckpt.npz", {"w": np.zeros(3, np.float32)}
  assert checkpoint.load_latest(path, tree) is None
  checkpoint.save(path, tree, dict(n=1))
  checkpoint.save(path, tree, dict(n=2))
  assert checkpoint.previous(path).name == "ckpt.prev.npz" and checkpoint.load_latest(path, tree)[1] == dict(n=2)
  os.replace(path, tmp_path / "moved")  # a writer killed between its two renames
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert checkpoint.load_latest(path, tree)[1] == dict(n=1)
  path.write_bytes(b"PK\x03\x04")
  with pytest.warns(UserWarning, match="ckpt.npz is truncated or corrupted.*loading the previous checkpoint"):
    assert checkpoint.load_latest(path, tree)[1] == dict(n=1)
  checkpoint.previous(path).write_bytes(b"")
  with pytest.raises(ValueError, match=f"checkpoint {path} is truncated or corrupted"):
    checkpoint.load_latest(path, tree)


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_full_disk_during_a_write_loses_nothing(tmp_path, monkeypatch, failing):
  path = tmp_path / "ckpt.npz"
  for n in (1, 2):
    checkpoint.save(path, {"w": np.full(3, n, np.float32)}, dict(n=n))
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

  def full_disk(file, **arrays):
    if failing == "write":
      file.write(bytes(1000))  # part of the archive got onto the disk
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(*(np, "savez") if failing == "write" else (os, "fsync"), full_disk)
  with pytest.raises(OSError) as raised:
    checkpoint.save(path, {"w": np.full(3, 3, np.float32)}, dict(n=3))
  assert raised.value.errno == errno.ENOSPC
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # untouched, no temporary file left
  tree, position = checkpoint.load(path, {"w": np.zeros(3, np.float32)})
  assert position == dict(n=2) and np.all(tree["w"] == 2)


def test_a_commit_is_durable(tmp_path, monkeypatch):
  """The file is fsynced before it is renamed into place, and its directory after: the rename is durable."""
  path = tmp_path / "ckpt.npz"
  checkpoint.save(path, {"w": np.zeros(3)}, {})
  calls, fsync, replace = [], os.fsync, os.replace
  monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", os.fstat(fd).st_ino)) or fsync(fd))
  monkeypatch.setattr(
    os, "replace", lambda src, dst: calls.append(("replace", pathlib.Path(dst).name)) or replace(src, dst)
  )
  checkpoint.save(path, {"w": np.ones(3)}, {})
  assert calls == [
    ("fsync", path.stat().st_ino),
    ("replace", "ckpt.prev.npz"),
    ("replace", "ckpt.npz"),
    ("fsync", tmp_path.stat().st_ino),
  ]
