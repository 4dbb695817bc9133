"""Layer names (`named`, keyword layers), `capture` of intermediate outputs, params and state by name."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funconv as fc
from funconv import models

KEY = jax.random.key(0)
NET = fc.serial(
  fc.named("conv", fc.Conv(4, 3, padding="SAME")),
  fc.BatchNorm(),
  fc.Relu,
  fc.residual(fc.serial(c=fc.Conv(4, 3, padding="SAME"), norm=fc.LayerNorm())),
  fc.MaxPool(2, strides=2),
  fc.Flatten,
  head=fc.Dense(3),
)
IN = (6, 6, 2)
_, PARAMS, STATE = NET.init(KEY, IN)
X = jax.random.normal(jax.random.key(1), IN)


def by_hand(x, train=False):
  """NET's layers one by one: the outputs `capture` must return."""
  p, s = PARAMS, STATE
  conv, _ = fc.Conv(4, 3, padding="SAME").apply(p[0], s[0], x)
  bn, _ = fc.BatchNorm().apply(p[1], s[1], conv, train=train)
  relu = jax.nn.relu(bn)
  c, _ = fc.Conv(4, 3, padding="SAME").apply(p[3][1][0][0], (), relu)
  norm, _ = fc.LayerNorm().apply(p[3][1][0][1], (), c)
  block = norm + relu
  pool, _ = fc.MaxPool(2, strides=2).apply((), (), block)
  head, _ = fc.Dense(3).apply(p[6], (), pool.reshape(-1))
  return {
    "conv": conv,
    "1": bn,
    "2": relu,
    "3/branches/main/c": c,
    "3/branches/main/norm": norm,
    "3/branches/main": norm,
    "3/branches/shortcut": relu,
    "3/add": block,
    "3": block,
    "4": pool,
    "5": pool.reshape(-1),
    "head": head,
  }


def test_names_replace_indices_in_summary_and_errors():
  rows = fc.summary(NET, IN, print_fn=None)["rows"]
  assert [(r["name"], r["type"], r["index"]) for r in rows] == [
    ("conv", "Conv", (0,)),
    ("1", "BatchNorm", (1,)),
    ("2", "Relu", (2,)),
    ("3/branches/main/c", "Conv", (3, 1, 0, 0)),
    ("3/branches/main/norm", "LayerNorm", (3, 1, 0, 1)),
    ("3/branches/shortcut", "Identity", (3, 1, 1)),
    ("4", "MaxPool", (4,)),
    ("5", "Flatten", (5,)),
    ("head", "Dense", (6,)),
  ]
  wrong = list(PARAMS)
  wrong[3] = ((), (((jnp.zeros((3, 3, 4, 5)), jnp.zeros(5)), PARAMS[3][1][0][1]), ()), ())
  with pytest.raises(ValueError, match=r"^3/branches/main/c \(Conv\): params\[0\] has shape \(3, 3, 4, 5\)"):
    NET.apply(tuple(wrong), STATE, X)
  with pytest.raises(ValueError, match=r"^conv \(Conv\): .*input channels"):
    NET.apply(PARAMS, STATE, jnp.ones((6, 6, 3)))


def test_a_name_on_a_named_layer_adds_a_level_and_the_outermost_name_counts():
  inner = fc.named("block", fc.named("conv", fc.Conv(2, 3)))
  assert [r["name"] for r in fc.summary(fc.serial(inner, fc.Relu), (5, 5, 1), print_fn=None)["rows"]] == [
    "block/conv",
    "1",
  ]
  assert [r["name"] for r in fc.summary(fc.named("net", fc.Dense(2)), (3,), print_fn=None)["rows"]] == ["net"]


@pytest.mark.parametrize("name", ["", "a/b", "3", 3, None])
def test_bad_names_are_rejected(name):
  with pytest.raises(ValueError, match="named: name must be"):
    fc.named(name, fc.Relu)


def test_sibling_names_must_differ_and_keyword_layers_are_checked():
  with pytest.raises(ValueError, match="serial: two of its layers are named 'a'"):
    fc.serial(fc.named("a", fc.Relu), a=fc.Tanh)
  with pytest.raises(ValueError, match="parallel: two of its layers are named 'x'"):
    fc.parallel(fc.named("x", fc.Relu), fc.named("x", fc.Relu))
  with pytest.raises(TypeError, match="serial: layer conv must be a funconv Layer.*a constructor"):
    fc.serial(conv=fc.Conv)
  fc.serial(fc.named("a", fc.Relu), fc.serial(fc.named("a", fc.Relu)))  # different containers: fine


@pytest.mark.parametrize("wrap", ["eager", "jit"])
def test_capture_returns_every_layers_output(wrap):
  run = fc.capture(NET.apply)
  run = jax.jit(run) if wrap == "jit" else run
  (y, outputs), state = run(PARAMS, STATE, X)
  expected = by_hand(X)
  assert {k for k, v in outputs.items() if not isinstance(v, list)} == set(expected)
  assert {k for k, v in outputs.items() if isinstance(v, list)} == {"3/split", "3/branches"}
  for path, value in expected.items():
    np.testing.assert_allclose(outputs[path], value, rtol=1e-5, atol=1e-5, err_msg=path)
  np.testing.assert_allclose(y, expected["head"], rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_equal(state, STATE)


def test_capture_chooses_by_path_or_by_type_and_names_a_missing_path():
  (_, outputs), _ = fc.capture(NET.apply, ["conv", "3"])(PARAMS, STATE, X)
  assert list(outputs) == ["conv", "3"]
  (_, outputs), _ = fc.capture(NET.apply, "head")(PARAMS, STATE, X)
  assert list(outputs) == ["head"]
  (_, outputs), _ = fc.capture(NET.apply, lambda path, kind: kind == "Conv")(PARAMS, STATE, X)
  assert list(outputs) == ["conv", "3/branches/main/c"]
  with pytest.raises(ValueError, match="capture: the model has no layer 'cnov'; its layers are .*'conv'"):
    fc.capture(NET.apply, ["cnov"])(PARAMS, STATE, X)
  with pytest.raises(TypeError, match="capture: names must be"):
    fc.capture(NET.apply, [3])
  with pytest.raises(TypeError, match="capture: apply must be"):
    fc.capture(NET)


def test_capture_under_batched_and_in_training():
  xs = jax.random.normal(jax.random.key(2), (3, *IN))
  run = fc.batched(fc.capture(NET.apply, ["conv", "1", "head"]))
  (y, outputs), state = jax.jit(lambda p, s, x: run(p, s, x, train=True))(PARAMS, STATE, xs)
  chex.assert_shape([outputs["conv"], outputs["1"]], (3, 6, 6, 4))
  chex.assert_shape([outputs["head"], y], (3, 3))
  np.testing.assert_allclose(outputs["head"], y)
  conv = jax.vmap(lambda x: by_hand(x)["conv"])(xs)
  mean, var = conv.mean((0, 1, 2), keepdims=True), conv.var((0, 1, 2), keepdims=True)  # BatchNorm's batch statistics
  normalised = (conv - mean) / jnp.sqrt(var + 1e-5)
  np.testing.assert_allclose(outputs["1"], normalised, rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_equal_shapes(state, STATE)


def test_a_gradient_through_a_captured_output():
  """A probe's loss on an intermediate output: its gradient is the one of the layers up to it."""

  def probe(params):
    (_, outputs), _ = fc.capture(NET.apply, "3")(params, STATE, X)
    return jnp.sum(outputs["3"] ** 2)

  def up_to_block(params):
    front = fc.serial(
      *[
        fc.Conv(4, 3, padding="SAME"),
        fc.BatchNorm(),
        fc.Relu,
        fc.residual(fc.serial(fc.Conv(4, 3, padding="SAME"), fc.LayerNorm())),
      ]
    )
    y, _ = front.apply(params[:4], STATE[:4], X)
    return jnp.sum(y**2)

  grads = jax.grad(probe)(PARAMS)
  chex.assert_trees_all_close(grads[:4], jax.grad(up_to_block)(PARAMS)[:4], rtol=1e-5, atol=1e-6)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grads[6]))  # the head is after the probe


def test_shape_dependent_layers_are_captured_once():
  net = fc.serial(c1=fc.shape_dependent(lambda shape: fc.Conv(2, 3)), act=fc.Relu)
  _, params, state = net.init(KEY, (5, 5, 1))
  (_, outputs), _ = fc.capture(net.apply)(params, state, jnp.ones((5, 5, 1)))
  assert list(outputs) == ["c1", "act"]


def test_param_names_address_params_and_state():
  names, state_names = fc.param_names(NET, IN)
  assert names == (
    ("conv/W", "conv/b"),
    ("1/beta", "1/gamma"),
    (),
    (
      (),
      (
        (("3/branches/main/c/W", "3/branches/main/c/b"), ("3/branches/main/norm/beta", "3/branches/main/norm/gamma")),
        (),
      ),
      (),
    ),
    (),
    (),
    ("head/W", "head/b"),
  )
  assert state_names == ((), ("1/mean", "1/var"), (), ((), (((), ()), ()), ()), (), (), ())
  flat = fc.by_name(names, PARAMS)
  assert list(flat)[:3] == ["conv/W", "conv/b", "1/beta"] and flat["head/W"] is PARAMS[6][0]
  assert fc.by_name(state_names, STATE)["1/var"] is STATE[1][1]
  changed = fc.set_by_name(names, PARAMS, {"3/branches/main/c/b": jnp.ones(4)})
  np.testing.assert_array_equal(changed[3][1][0][0][1], jnp.ones(4))
  chex.assert_trees_all_equal(changed[:3], PARAMS[:3])
  with pytest.raises(ValueError, match="set_by_name: no leaf named 'conv/w'"):
    fc.set_by_name(names, PARAMS, {"conv/w": jnp.ones(4)})
  with pytest.raises(ValueError, match=r"set_by_name: head/b has shape \(3,\), got \(4,\)"):
    fc.set_by_name(names, PARAMS, {"head/b": jnp.ones(4)})
  with pytest.raises(ValueError, match="by_name: names and tree must have the same structure"):
    fc.by_name(names, STATE)


def test_param_names_of_a_layer_alone_and_without_bias():
  assert fc.param_names(fc.Dense(3), (4,)) == (("W", "b"), ())
  assert fc.param_names(fc.serial(fc.Conv(2, 3, use_bias=False), fc.LayerNorm(center=False)), (4, 4, 1))[0] == (
    ("0/W",),
    (None, "1/gamma"),
  )


ZOO = [
  (models.lenet5, (28, 28, 1)),
  (models.resnet20, (32, 32, 3)),
  (lambda: models.cifar_resnet(8, shortcuts=False), (32, 32, 3)),
  (models.resnet18, (64, 64, 3)),
  (models.resnet50, (64, 64, 3)),
  (models.small_cnn, (8, 8, 1)),
  (lambda: models.vgg11(batch_norm=True), (32, 32, 3)),
  (models.alexnet, (64, 64, 3)),
  (lambda: models.mobilenet_v1(width_multiplier=0.25), (32, 32, 3)),
]


@pytest.mark.parametrize("make, shape", ZOO)
def test_zoo_layers_carry_meaningful_names(make, shape):
  """Every layer and every parameter of a zoo model has a name made of words, none an index."""
  net = make()
  rows = fc.summary(net, shape, print_fn=None)["rows"]
  assert all(not segment.isdigit() for r in rows for segment in r["name"].split("/")), [r["name"] for r in rows]
  names, state_names = fc.param_names(net, shape)
  leaves = jax.tree.leaves((names, state_names))
  assert len(set(leaves)) == len(leaves)
  assert all(not segment.isdigit() for name in leaves for segment in name.split("/"))


def test_zoo_names_reach_inside():
  net = models.resnet20()
  _, params, state = jax.eval_shape(lambda: net.init(KEY, (32, 32, 3)))
  names, _ = fc.param_names(net, (32, 32, 3))
  assert fc.by_name(names, params)["stage2/block0/residual/branches/main/conv1/W"].shape == (3, 3, 16, 32)
  lenet = models.lenet5()
  assert "C3/W" in fc.by_name(fc.param_names(lenet, (32, 32, 1))[0], lenet.init(KEY, (32, 32, 1))[1])
  out = jax.eval_shape(
    lambda p, s, x: fc.capture(net.apply, ["stage2", "stage3/block2/relu", "pool"])(p, s, x),
    params,
    state,
    jax.ShapeDtypeStruct((32, 32, 3), jnp.float32),
  )
  (_, outputs), _ = out
  assert {k: v.shape for k, v in outputs.items()} == {
    "stage2": (16, 16, 32),
    "stage3/block2/relu": (8, 8, 64),
    "pool": (64,),
  }
  plain = fc.summary(models.cifar_resnet(20, shortcuts=False), (32, 32, 3), print_fn=None)
  assert plain["params"] == fc.summary(net, (32, 32, 3), print_fn=None)["params"]
  assert "FanInSum" not in {r["type"] for r in plain["rows"]}
  with pytest.raises(TypeError, match="cifar_resnet: shortcuts must be True or False"):
    models.cifar_resnet(20, shortcuts=1)
