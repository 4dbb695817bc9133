"""Steps against a hand-written reference, checkpoints, kill-during-write, resume, the NaN stop."""

import json
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

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
  step_dir = train.save_checkpoint(tmp_path / "ck", ts, dict(epoch=2, batch=5))
  template = train.init_train_state(model, optimizer, (6, 6, 1), seed=4)
  for path in (tmp_path / "ck", step_dir):
    restored, position = train.load_checkpoint(path, template)
    assert position == dict(epoch=2, batch=5)
    assert_same_bits(restored, ts)
  with pytest.raises(ValueError, match=f"checkpoint {step_dir} holds a different train state structure"):
    train.load_checkpoint(step_dir, train.init_train_state(fc.Dense(2), optimizer, (3,)))
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    train.load_checkpoint(tmp_path, template)


def assert_same_bits(a, b):
  """Two train states hold the same arrays, bit for bit (PRNG keys as their key data)."""
  a, b = (jax.tree.leaves(jax.tree.map(checkpoint._host, t)) for t in (a, b))
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_a_process_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
  script = textwrap.dedent(f"""
      import numpy as np
      from funconv.train import checkpoint
      state = {{"step": np.int32(0), "w": np.zeros((2048, 2048), np.float32)}}
      with checkpoint.Checkpoints({str(tmp_path)!r}) as ckpts:
          while True:
              ckpts.save(state, dict(n=int(state["step"])), step=int(state["step"]))
              if state["step"] == 1:
                  print("ready", flush=True)
              state = dict(step=state["step"] + 1, w=state["w"] + 1)
  """)
  proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "ready"
  time.sleep(1.5)
  proc.kill()
  proc.wait()
  template = {"step": np.int32(0), "w": np.zeros((2048, 2048), np.float32)}
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # the newest committed step is complete: no fallback
    tree, position = checkpoint.Checkpoints(tmp_path, read_only=True).load(template)
  assert position["n"] == int(tree["step"]) >= 1 and np.all(np.asarray(tree["w"]) == position["n"])
  steps = {str(s) for s in checkpoint.Checkpoints(tmp_path, read_only=True).steps()}
  assert {p.name for p in tmp_path.iterdir() if ".orbax-checkpoint-tmp" not in p.name} == steps  # and no other file


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
  for name in ("checkpoints", "best"):
    assert_same_bits(*(train.load_checkpoint(tmp_path / run / name, full)[0] for run in ("full", "cut")))


def write_npz(path, train_state, position):
  """A checkpoint in the `.npz` format funconv wrote before orbax."""
  meta = json.dumps(dict(position=position, treedef=str(jax.tree.structure(train_state))))
  leaves = {f"leaf_{i}": checkpoint._host(leaf) for i, leaf in enumerate(jax.tree.leaves(train_state))}
  np.savez(path, __meta__=np.frombuffer(meta.encode(), np.uint8), **leaves)


def test_a_run_of_npz_checkpoints_resumes_in_the_new_layout(tmp_path):
  ds, kwargs = tiny_data(), dict(batch_size=8, seed=0, progress=False)
  full, _ = train.fit(tiny_model(), ds, optax.adam(1e-2), epochs=3, out_dir=tmp_path / "full", **kwargs)
  old = tmp_path / "old"
  half, _ = train.fit(tiny_model(), ds, optax.adam(1e-2), epochs=2, out_dir=old, **kwargs)
  for name, npz in (("checkpoints", "checkpoint.npz"), ("best", "best.npz")):
    write_npz(old / npz, *train.load_checkpoint(old / name, half))
    shutil.rmtree(old / name)
  with pytest.raises(ValueError, match=f"checkpoint {old / 'best.npz'} holds a different train state structure"):
    train.load_checkpoint(old / "best.npz", train.init_train_state(fc.Dense(2), optax.adam(1e-2), (3,)))
  train.fit(tiny_model(), ds, optax.adam(1e-2), epochs=3, out_dir=old, resume=True, **kwargs)
  for name in ("checkpoints", "best"):
    assert_same_bits(*(train.load_checkpoint(tmp_path / run / name, full)[0] for run in ("full", "old")))


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
    FloatingPointError,
    match=rf"loss became nan at epoch 2, batch 1 .*last good checkpoint is {tmp_path}/checkpoints/8 \(epoch 1",
  ):
    train.fit(
      tiny_model(), poisoned, optax.sgd(0.1), epochs=2, batch_size=8, out_dir=tmp_path, progress=False, resume=True
    )
  kept, position = train.load_checkpoint(tmp_path / "checkpoints", good)
  assert position["epoch"] == 1
  assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(kept.params))


def test_the_command_line_entry_point(tmp_path, capsys):
  report = cli.run(["--epochs", "2", "--out", str(tmp_path), "--no-progress"])
  assert report["test_accuracy"] > 0.8
  assert "test accuracy:" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="Place the standard files"):
    cli.run(["--dataset", "mnist", "--data-dir", str(tmp_path)])


def test_a_step_saved_before_later_ones_replaces_them_and_loads_in_the_templates_dtype(tmp_path):
  """A run resumed from step 10 (a later step damaged, say) writes step 12: steps 20 and on are its abandoned
  future. Loading casts to the template's dtypes, after checking the CRC-32s of the arrays as written."""
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    for n in (10, 20, 12):
      ckpts.save({"w": np.full(3, n, np.float32)}, dict(n=n), step=n)
  assert ckpts.steps() == [10, 12]
  tree, position = checkpoint.load(tmp_path, {"w": jnp.zeros(3, jnp.bfloat16)})
  assert position == dict(n=12) and tree["w"].dtype == jnp.bfloat16 and bool(jnp.all(tree["w"] == 12))
