"""Data parallelism on 4 simulated CPU devices (tests/conftest.py sets XLA_FLAGS): a batch-sharded
input stays sharded through every op and layer, each device computing on its own examples (no
all-gather in the compiled program), with the single-device result; on Auto and Explicit meshes
under `jit`, and under `shard_map` with its default checks."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import funconv as fc
from tests.ops.test_phases import phase_of
from tests.oracle import assert_close_to_largest, native_conv, sum_error_bound

MESH_TYPES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}


@pytest.fixture(scope="module", autouse=True)
def four_devices():
  assert jax.device_count() >= 4, (
    "the sharding tests need 4 devices: run pytest with "
    "XLA_FLAGS=--xla_force_host_platform_device_count=4 (tests/conftest.py sets it)"
  )


def data_mesh(kind):
  return jax.make_mesh((4,), ("data",), axis_types=(MESH_TYPES[kind],))


def assert_data_parallel(fn, args, sharded_batch, mesh, terms, growth=1.0):
  """`fn(*args)` under `jit` on `mesh` with `args[sharded_batch]` batch-sharded: no all-gather in the
  compiled program, per-example results sharded over "data", values those of one device to twice the
  rounding bound of sums of `terms` products (relative to the largest value: `sum_error_bound`)."""
  expected = jax.jit(fn)(*args)
  args = list(args)
  args[sharded_batch] = jax.device_put(args[sharded_batch], NamedSharding(mesh, P("data")))
  with jax.set_mesh(mesh):
    compiled = jax.jit(fn).lower(*args).compile()
    result = compiled(*args)
  assert "all-gather" not in compiled.as_text()
  assert_close_to_largest(result, expected, 2 * sum_error_bound(terms, growth=growth))
  return result


@pytest.mark.parametrize("kind", MESH_TYPES)
def test_convolution_and_its_gradients_stay_on_their_shards(kind):
  # Large enough that the algorithms loop over chunks of the batch: that loop is what would gather.
  x = jax.random.normal(jax.random.key(0), (64, 32, 32, 8))
  w = jax.random.normal(jax.random.key(1), (3, 3, 8, 16))
  mesh = data_mesh(kind)
  # The longest sums: a forward output's 3 x 3 x 8 products, a kernel gradient's 64 x 16 x 16 (stride 2).
  y = assert_data_parallel(lambda x, w: fc.ops.conv(x, w, padding="SAME"), (x, w), 0, mesh, 3 * 3 * 8)
  assert y.sharding.spec[0] == "data"
  dx, dw = assert_data_parallel(
    jax.grad(lambda x, w: jnp.sum(jnp.sin(fc.ops.conv(x, w, (2, 2), "SAME"))), (0, 1)), (x, w), 0, mesh, 64 * 16 * 16
  )
  assert dx.sharding.spec[0] == "data" and dw.sharding.is_fully_replicated
  ty = assert_data_parallel(
    lambda x, w: jax.jvp(lambda x, w: fc.ops.conv_transpose(x, w, (2, 2), "SAME"), (x, w), (x, w))[1],
    (x, w),
    0,
    mesh,
    2 * 2 * 16,
  )
  assert ty.sharding.spec[0] == "data"
  # A dilated convolution that runs by phases: its batch, split into phases and back, stays sharded;
  # the phases run Winograd's F(4, 3), whose transform matrices are array constants (on an Auto mesh,
  # operands of the partitioned call). A quadratic loss keeps the errors relative to the largest value
  # (its cotangent is the output itself): a sine's derivative would turn the forward pass's rounding,
  # relative to outputs near 40, into errors relative to 1.
  x32, w32 = jax.random.normal(jax.random.key(2), (16, 16, 16, 32)), jax.random.normal(jax.random.key(3), (3, 3, 32, 8))
  dilated = lambda x, w: fc.ops.conv(x, w, padding="SAME", dilation=2)
  assert phase_of(dilated, x32, w32, "cpu")
  loss = lambda x, w: jnp.sum(dilated(x, w) ** 2) / 2
  terms = 16 * 8 * 8  # a kernel gradient's sum on a phase: 16 examples x 8 x 8 positions (an input gradient's: 72)
  dx, dw = assert_data_parallel(jax.grad(loss, (0, 1)), (x32, w32), 0, mesh, terms, growth=10)
  assert dx.sharding.spec[0] == "data" and dw.sharding.is_fully_replicated
  # Each gradient alone: the input gradient and the kernel gradient primitives, not their fused pair.
  assert assert_data_parallel(jax.grad(loss), (x32, w32), 0, mesh, terms, growth=10).sharding.spec[0] == "data"
  assert assert_data_parallel(jax.grad(loss, 1), (x32, w32), 0, mesh, terms, growth=10).sharding.is_fully_replicated


def test_programs_share_a_convolutions_partitioned_call(monkeypatch):
  """On an Auto mesh a primitive lowers to a `custom_partitioning` of its kernel, traced once per
  spec and operand types: a second program lowering the same convolutions traces nothing."""
  traced = []
  make_jaxpr = jax.make_jaxpr
  monkeypatch.setattr(jax, "make_jaxpr", lambda fn: traced.append(fn) or make_jaxpr(fn))
  mesh = data_mesh("auto")
  x = jax.device_put(jax.random.normal(jax.random.key(0), (8, 12, 12, 4)), NamedSharding(mesh, P("data")))
  w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
  layers = lambda x, w: fc.ops.conv(
    fc.ops.conv(fc.ops.conv(x, w, padding="SAME"), w, padding="SAME"), w, padding="SAME"
  )
  with jax.set_mesh(mesh):
    assert "custom_call @CustomSPMDPartitioning" in jax.jit(layers).lower(x, w).as_text()
    first = len(traced)  # 1, or 0 where an earlier test lowered the same convolution
    jax.jit(lambda x, w: 2 * layers(x, w)).lower(x, w)
  assert first <= 1 and len(traced) == first


LAYERS = {
  "Conv": fc.Conv(8, (3, 3), padding="SAME"),
  "ConvTranspose": fc.ConvTranspose(4, (2, 2), (2, 2)),
  "DepthwiseConv": fc.DepthwiseConv((3, 3)),
  "Dense": fc.Dense(5),
  "MaxPool": fc.MaxPool((2, 2), (2, 2)),
  "AvgPool": fc.AvgPool((3, 3), (1, 1), "SAME"),
  "L2Pool": fc.L2Pool((2, 2), (2, 2)),
  "GlobalAvgPool": fc.GlobalAvgPool,
  "AdaptiveAvgPool": fc.AdaptiveAvgPool((3, 3)),
  "Flatten": fc.Flatten,
  "Reshape": fc.Reshape((-1, 4)),
  "BatchNorm": fc.BatchNorm(),
  "GroupNorm": fc.GroupNorm(2),
  "LayerNorm": fc.LayerNorm(),
  "Dropout": fc.Dropout(0.5),
  "FanInConcat": fc.serial(fc.FanOut(2), fc.FanInConcat()),
}


@pytest.mark.parametrize("kind", MESH_TYPES)
@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_keeps_the_batch_sharded(name, kind):
  layer = LAYERS[name]
  _, params, state = layer.init(jax.random.key(0), (8, 8, 4))
  x = jax.random.normal(jax.random.key(1), (16, 8, 8, 4))
  apply = lambda x: fc.batched(layer.apply)(params, state, x, key=jax.random.key(2), train=True)
  y, _ = assert_data_parallel(apply, (x,), 0, data_mesh(kind), 16 * 8 * 8)  # BatchNorm's sums over the batch
  assert y.sharding.spec[0] == "data"


def bn_cnn():
  """No bias before a BatchNorm: its exact gradient is 0, its float one rounding noise that no relative bound fits."""
  return fc.serial(
    fc.Conv(16, (3, 3), padding="SAME", use_bias=False),
    fc.BatchNorm(),
    fc.Relu,
    fc.MaxPool((2, 2), (2, 2)),
    fc.Conv(16, (3, 3), padding="SAME", use_bias=False),
    fc.BatchNorm(),
    fc.Relu,
    fc.GlobalAvgPool,
    fc.Dense(10),
  )


@pytest.mark.parametrize("kind", MESH_TYPES)
def test_a_data_parallel_training_step_of_a_batchnorm_cnn(kind):
  net, optimizer = bn_cnn(), optax.sgd(0.1, momentum=0.9)
  _, params, state = net.init(jax.random.key(0), (16, 16, 3))
  x = jax.random.normal(jax.random.key(1), (64, 16, 16, 3))
  labels = jax.random.randint(jax.random.key(2), (64,), 0, 10)

  def step(params, state, opt_state, x, labels):
    def loss(p):
      logits, new_state = fc.batched(net.apply)(p, state, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_state

    (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return value, optax.apply_updates(params, updates), new_state, opt_state

  value, new_params, new_state, _ = assert_data_parallel(  # the first kernel gradient sums 64 x 16 x 16 products
    step, (params, state, optimizer.init(params), x, labels), 3, data_mesh(kind), 64 * 16 * 16
  )
  chex.assert_trees_all_equal_shapes_and_dtypes(new_params, params)
  assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves((value, new_params, new_state)))


def test_shard_map_with_its_default_checks():
  net = fc.serial(
    fc.Conv(8, (3, 3), padding="SAME"),
    fc.GroupNorm(4),
    fc.Relu,
    fc.MaxPool((2, 2), (2, 2)),
    fc.Conv(8, (3, 3), (2, 2)),
    fc.Relu,
    fc.Flatten,
    fc.Dense(10),
  )
  _, params, state = net.init(jax.random.key(0), (16, 16, 3))
  x = jax.random.normal(jax.random.key(1), (32, 16, 16, 3))
  mesh = jax.make_mesh((4,), ("data",))
  loss = lambda p, x: jnp.mean(fc.batched(net.apply)(p, state, x)[0] ** 2)
  # Under shard_map each device's loss varies over "data": the global loss is their mean.
  local = lambda p, x: jax.value_and_grad(lambda p: jax.lax.pmean(loss(p, x), "data"))(p)
  sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P()))
  got = sharded(params, jax.device_put(x, NamedSharding(mesh, P("data"))))
  want = jax.jit(jax.value_and_grad(loss))(params, x)
  assert_close_to_largest(got, want, 2 * sum_error_bound(32 * 16 * 16))  # the first kernel gradient's sum


def test_only_the_batch_axis_may_be_sharded_in_an_explicit_type():
  mesh = data_mesh("explicit")
  x = jax.device_put(jnp.ones((4, 8, 8, 3)), NamedSharding(mesh, P(None, "data")))
  with jax.set_mesh(mesh), pytest.raises(ValueError, match="only the batch axis"):
    jax.jit(lambda x: fc.ops.conv(x, jnp.ones((3, 3, 3, 4))))(x)


def test_shard_map_through_the_in_place_loops():
  """The patch matrix and col2im filled in a loop (im2col at few channels: LeNet-5's 14x14x6 layer)
  start from zeros that vary over the devices as the input does, under shard_map's default checks."""
  x = jax.random.normal(jax.random.key(0), (32, 14, 14, 6))
  w = jax.random.normal(jax.random.key(1), (5, 5, 6, 16))
  mesh = jax.make_mesh((4,), ("data",))
  loss = lambda x, w: jnp.mean(fc.ops.conv(x, w) ** 2)
  local = lambda x, w: jax.grad(lambda x, w: jax.lax.pmean(loss(x, w), "data"), (0, 1))(x, w)
  sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P()), out_specs=(P("data"), P())))
  got = sharded(jax.device_put(x, NamedSharding(mesh, P("data"))), w)
  want = jax.jit(jax.grad(loss, (0, 1)))(x, w)
  assert_close_to_largest(got, want, 2 * sum_error_bound(32 * 10 * 10))  # the kernel gradient's sum


@pytest.mark.parametrize("argnums", [0, 1, (0, 1)])
def test_shard_map_through_phases(argnums):
  """A dilated convolution by phases, under shard_map's default checks: each gradient alone and
  both, summed over the devices once (a kernel gradient cast to varying would be summed twice)."""
  x = jax.random.normal(jax.random.key(0), (8, 16, 16, 32))
  w = jax.random.normal(jax.random.key(1), (3, 3, 32, 4))
  mesh = jax.make_mesh((4,), ("data",))
  loss = lambda x, w: jnp.mean(fc.ops.conv(x, w, padding="SAME", dilation=2) ** 2)
  assert phase_of(lambda x, w: fc.ops.conv(x, w, padding="SAME", dilation=2), x, w, "cpu")
  local = lambda x, w: jax.grad(lambda x, w: jax.lax.pmean(loss(x, w), "data"), argnums)(x, w)
  specs = {0: P("data"), 1: P(), (0, 1): (P("data"), P())}[argnums]
  sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P()), out_specs=specs))
  got = sharded(jax.device_put(x, NamedSharding(mesh, P("data"))), w)
  want = jax.jit(jax.grad(loss, argnums))(x, w)
  # The kernel gradient's sum on a phase: 8 examples x 8 x 8 positions, by Winograd's F(4, 3).
  assert_close_to_largest(got, want, 2 * sum_error_bound(8 * 8 * 8, growth=10))


# The data-parallel cases a user met, run on funconv's convolution and on lax's own (the oracle).
CONVOLUTIONS = {"funconv": fc.ops.conv, "lax": native_conv}


@pytest.mark.parametrize(
  "conv",
  [
    "funconv",
    pytest.param(
      "lax",
      marks=pytest.mark.xfail(
        strict=True,
        reason="lax's convolution of a vmapped example on an Explicit mesh asks for its out_sharding",
      ),
    ),
  ],
)
def test_a_batchnorm_cnns_gradient_on_an_explicit_mesh(conv):
  """BatchNorm's statistics under `batched` on an Explicit mesh (the batch's sharding in the types), dropout keys
  split per example: the gradient of the training loss is the one device's."""
  conv = CONVOLUTIONS[conv]
  norm = fc.BatchNorm()
  _, bn_params, bn_state = norm.init(jax.random.key(0), (16, 16, 8))
  drop = fc.Dropout(0.25)

  def example(params, x, key, train=True):
    w1, w2, dense = params
    h, _ = norm.apply(bn_params, bn_state, conv(x, w1, padding="SAME"), train=train)
    h, _ = drop.apply((), (), jax.nn.relu(conv(h, w2, padding="SAME")), key=key, train=train)
    return jnp.mean(h, axis=(0, 1)) @ dense, bn_state

  params = (
    jax.random.normal(jax.random.key(1), (3, 3, 3, 8)),
    jax.random.normal(jax.random.key(2), (3, 3, 8, 8)) / 8,
    jax.random.normal(jax.random.key(3), (8, 10)),
  )
  x = jax.random.normal(jax.random.key(4), (32, 16, 16, 3))
  labels = jnp.arange(32) % 10
  apply = fc.batched(lambda p, s, x, key, train: example(p, x, key, train))

  def loss(params, x, labels):
    logits, _ = apply(params, (), x, key=jax.random.key(5), train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  want = jax.jit(jax.grad(loss))(params, x, labels)
  mesh = data_mesh("explicit")
  with jax.set_mesh(mesh):
    sharded = [jax.device_put(a, NamedSharding(mesh, P("data"))) for a in (x, labels)]
    got = jax.jit(jax.grad(loss))(params, *sharded)
  assert_close_to_largest(got, want, 2 * sum_error_bound(32 * 16 * 16))  # the first kernel gradient's sum


@pytest.mark.parametrize("conv", CONVOLUTIONS)
def test_shard_map_of_a_kernel_gradient_with_the_kernel_closed_over(conv):
  """The kernel replicated and closed over (not an argument), each device's gradient of its own loss: the chunk
  loop's sum starts varying over "data" as its chunks do."""
  conv = CONVOLUTIONS[conv]
  x = jax.random.normal(jax.random.key(0), (128, 32, 32, 3))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 16))
  local = lambda x: jax.grad(lambda w: jnp.sum(conv(x, w, padding="SAME") ** 2))(w)
  mesh = jax.make_mesh((4,), ("data",))
  got = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=P()))(
    jax.device_put(x, NamedSharding(mesh, P("data")))
  )
  # The kernel is invariant over "data": its gradient is the sum of the devices' (JAX sums the cotangent of
  # the cast that lets it meet their varying inputs), the gradient of all 128 examples' loss.
  want = jax.jit(local)(x)
  assert_close_to_largest(got, want, 2 * sum_error_bound(128 * 32 * 32))
