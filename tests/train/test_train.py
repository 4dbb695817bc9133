"""Steps against a hand-written reference, checkpoints, kill-during-write, resume, the NaN stop."""

import os
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funconv as fc
from funconv import data, train
from funconv.train import __main__ as cli
from funconv.train import checkpoint


def tiny_data(n=96, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 6, 6, 1)).astype(np.float32)
  y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int32)
  return data.DataSet(x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4 :], y[n * 3 // 4 :], 2)


def tiny_model():
  return fc.serial(
    fc.Conv(4, (3, 3), padding="SAME"), fc.BatchNorm(), fc.Relu, fc.Flatten, fc.Dropout(0.2), fc.Dense(2)
  )


def test_train_step_matches_a_hand_written_reference():
  model, optimizer = tiny_model(), optax.sgd(0.1)
  ts = train.init_train_state(model, optimizer, (6, 6, 1), seed=0)
  x, y = tiny_data().x_train[:8], tiny_data().y_train[:8]
  (W, b), _, _, _, _, (V, c) = ts.params
  _, dropout_key = jax.random.split(ts.key, 3)[1:]
  keys = jax.random.split(dropout_key, 8)

  def reference_loss(params):
    (W, b), (beta, gamma), _, _, _, (V, c) = params
    channel = lambda v: v.reshape(1, 1, 1, -1)
    h = jax.lax.conv_general_dilated(x, W, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + channel(b)
    mean, var = h.mean(axis=(0, 1, 2), keepdims=True), h.var(axis=(0, 1, 2), keepdims=True)
    h = jax.nn.relu((h - mean) / jnp.sqrt(var + 1e-5) * channel(gamma) + channel(beta)).reshape(8, -1)
    # the dropout key path: batched splits the key per example, serial splits it per layer
    masks = jnp.stack([jax.random.bernoulli(jax.random.split(k, 6)[4], 0.8, h.shape[1:]) for k in keys])
    h = jnp.where(masks, h / 0.8, 0.0)
    return optax.softmax_cross_entropy_with_integer_labels(h @ V + c[None], y).mean()

  train_step, eval_step = train.make_steps(model, optimizer)
  expected_grads = jax.grad(reference_loss)(ts.params)
  expected_params = jax.tree.map(lambda p, g: p - 0.1 * g, ts.params, expected_grads)
  expected_loss = reference_loss(ts.params)
  new_ts, metrics = train_step(ts, x, y)
  np.testing.assert_allclose(float(metrics["loss"]) / 8, float(expected_loss), rtol=1e-5)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6), new_ts.params, expected_params)
  assert int(new_ts.step) == 1
  assert float(eval_step(new_ts, x, y)["count"]) == 8


def test_checkpoint_round_trip(tmp_path):
  model, optimizer = tiny_model(), optax.adam(1e-3)
  ts = train.init_train_state(model, optimizer, (6, 6, 1), seed=3)
  train.save_checkpoint(tmp_path / "ck.npz", ts, dict(epoch=2, batch=5))
  template = train.init_train_state(model, optimizer, (6, 6, 1), seed=4)
  restored, position = train.load_checkpoint(tmp_path / "ck.npz", template)
  assert position == dict(epoch=2, batch=5)
  jax.tree.map(
    np.testing.assert_array_equal, jax.tree.map(np.asarray, restored.params), jax.tree.map(np.asarray, ts.params)
  )
  np.testing.assert_array_equal(jax.random.key_data(restored.key), jax.random.key_data(ts.key))
  with pytest.raises(ValueError, match="different train state structure"):
    train.load_checkpoint(tmp_path / "ck.npz", train.init_train_state(fc.Dense(2), optimizer, (3,)))


def test_a_process_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
  path = tmp_path / "ck.npz"
  script = textwrap.dedent(f"""
      import numpy as np, sys
      from funconv.train import checkpoint
      big = {{"w": np.zeros((4096, 4096), np.float32)}}
      checkpoint.save({str(path)!r}, {{"w": np.ones(3, np.float32)}}, dict(n=0))
      print("ready", flush=True)
      i = 1
      while True:
          big["w"][0, 0] = i
          checkpoint.save({str(path)!r}, big, dict(n=i))
          i += 1
  """)
  proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "ready"
  time.sleep(1.5)
  proc.kill()
  proc.wait()
  if not path.exists():  # killed between save's two renames: the newest complete checkpoint is the previous one
    path = checkpoint.previous(path)
  try:
    tree, position = train.load_checkpoint(path, {"w": np.ones(3, np.float32)})
    assert position["n"] == 0
  except ValueError:  # a later, complete checkpoint with the big array
    tree, position = train.load_checkpoint(path, {"w": np.zeros((4096, 4096), np.float32)})
    assert float(tree["w"][0, 0]) == position["n"]
  assert not [p for p in tmp_path.iterdir() if p.name not in ("ck.npz", "ck.prev.npz") and not p.name.endswith(".tmp")]


def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(tmp_path):
  ds = tiny_data()
  kwargs = dict(batch_size=8, seed=0, progress=False, checkpoint_every=2)
  full, _ = train.fit(tiny_model(), ds, optax.adam(1e-2), epochs=2, out_dir=tmp_path / "full", **kwargs)
  # interrupted mid-epoch 2 (after 3 steps of it), then resumed
  train.fit(tiny_model(), ds, optax.adam(1e-2), epochs=2, out_dir=tmp_path / "cut", max_steps=8 + 3, **kwargs)
  resumed, report = train.fit(
    tiny_model(), ds, optax.adam(1e-2), epochs=2, out_dir=tmp_path / "cut", resume=True, **kwargs
  )
  assert report["epochs_run"] == 2
  last_full, _ = train.load_checkpoint(tmp_path / "full" / "checkpoint.npz", full)
  last_resumed, _ = train.load_checkpoint(tmp_path / "cut" / "checkpoint.npz", resumed)
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), last_full.params, last_resumed.params
  )


def test_fit_early_stops_writes_curves_and_metrics(tmp_path):
  _, report = train.fit(
    tiny_model(), tiny_data(), optax.adam(1e-2), epochs=30, batch_size=8, patience=1, out_dir=tmp_path, progress=False
  )
  assert report["stopped_early"] and report["epochs_run"] < 30
  assert (tmp_path / "curves.png").stat().st_size > 1000
  assert (tmp_path / "metrics.json").exists()
  assert 0.0 <= report["test_accuracy"] <= 1.0


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
  ds = tiny_data()
  good, _ = train.fit(tiny_model(), ds, optax.sgd(0.1), epochs=1, batch_size=8, out_dir=tmp_path, progress=False)
  poisoned = ds._replace(x_train=np.full_like(ds.x_train, np.nan))
  with pytest.raises(
    FloatingPointError, match=r"loss became nan at epoch 2, batch 1 .*last good checkpoint .* \(epoch 1"
  ):
    train.fit(
      tiny_model(), poisoned, optax.sgd(0.1), epochs=2, batch_size=8, out_dir=tmp_path, progress=False, resume=True
    )
  kept, position = train.load_checkpoint(tmp_path / "checkpoint.npz", good)
  assert position["epoch"] == 1
  assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(kept.params))


def test_the_command_line_entry_point(tmp_path, capsys):
  report = cli.run(["--epochs", "2", "--out", str(tmp_path), "--no-progress"])
  assert report["test_accuracy"] > 0.8
  assert "test accuracy:" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="Place the standard files"):
    cli.run(["--dataset", "mnist", "--data-dir", str(tmp_path)])


def test_the_installed_command_exits_cleanly(tmp_path):
  done = subprocess.run(
    [sys.executable, "-m", "funconv.train", "--epochs", "1", "--out", str(tmp_path), "--no-progress"],
    capture_output=True,
    text=True,
    timeout=600,
    # As a user runs it: one CPU device, not the four that tests/conftest.py simulates.
    env=dict(os.environ, XLA_FLAGS=os.environ["XLA_FLAGS"].replace("--xla_force_host_platform_device_count=4", "")),
  )
  assert done.returncode == 0, done.stderr
  assert "test accuracy:" in done.stdout and "history" not in done.stderr
  assert (tmp_path / "curves.png").exists()
