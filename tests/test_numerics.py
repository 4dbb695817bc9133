"""Numerical hygiene: every layer and zoo model runs forward (training and evaluation) and backward under
`jax_debug_nans` on ordinary inputs, with finite results; L2 pooling and the normalisation layers have finite
gradients at exactly zero input."""

import jax
import jax.numpy as jnp
import pytest
from jax.example_libraries import stax

import funconv as fc
from funconv import models
from funconv.models.resnet import basic_block, bottleneck_block
from funconv.models.vgg import CONFIGS

# LLVM's expensive passes off: they keep the arithmetic that the check is about, and the zoo compiles in half the time.
FAST = dict(xla_backend_optimization_level=0, xla_llvm_disable_expensive_passes=True)


@pytest.fixture(autouse=True)
def debug_nans():
  """Raise FloatingPointError naming the op at the first NaN: a jitted function's outputs are checked, and on a NaN
  it is rerun op by op."""
  before = jax.config.jax_debug_nans
  jax.config.update("jax_debug_nans", True)
  yield
  jax.config.update("jax_debug_nans", before)


def forward_and_backward(net, x, key=jax.random.key(0)):
  """`(evaluation output, (grads of a training loss w.r.t. params and `x`, training output))` of `net` on the batch
  `x`, with the params and state `init` makes; the loss `sum(sin(y))` sends a cotangent in [-1, 1] to each output."""
  params, state = jax.jit(lambda k: net.init(k, x.shape[1:])[1:], compiler_options=FAST)(key)
  apply = fc.batched(net.apply)

  def loss(params, x):
    y, _ = apply(params, state, x, key=jax.random.key(1), train=True)
    return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(y)), y

  def run(params, x):
    return apply(params, state, x)[0], jax.grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  return jax.jit(run, compiler_options=FAST)(params, x)


def assert_finite(tree):
  for leaf in jax.tree.leaves(tree):
    assert bool(jnp.all(jnp.isfinite(leaf))), leaf


LAYERS = [  # (id, layer, input shape of one example)
  ("Dense", fc.Dense(5), (7,)),
  ("Conv", fc.Conv(4, (3, 3), padding="SAME"), (6, 6, 3)),
  ("Conv_strided_dilated_grouped", fc.Conv(6, (3, 3), strides=(2, 2), dilation=(2, 1), groups=3), (9, 9, 3)),
  ("Conv_1d_causal", fc.Conv(4, (3,), padding="CAUSAL"), (10, 2)),
  ("Conv_3d_circular", fc.Conv(2, (2, 2, 2), padding="CIRCULAR"), (4, 4, 4, 2)),
  ("ConvTranspose", fc.ConvTranspose(4, (3, 3), strides=(2, 2), padding="SAME"), (5, 5, 3)),
  ("DepthwiseConv", fc.DepthwiseConv((3, 3), depth_multiplier=2), (6, 6, 3)),
  ("SeparableConv", fc.SeparableConv(4, (3, 3), padding="SAME"), (6, 6, 3)),
  ("Dropout", fc.Dropout(0.5), (6, 6, 3)),
  ("Flatten", fc.Flatten, (6, 6, 3)),
  ("Reshape", fc.Reshape((-1, 9)), (6, 6, 3)),
  ("Identity", fc.Identity, (6, 6, 3)),
  *(
    (name, getattr(fc, name), (6, 6, 3))
    for name in ("Relu", "LeakyRelu", "Elu", "Selu", "Gelu", "Sigmoid", "Tanh", "Softplus", "Softmax", "LogSoftmax")
  ),
  ("elementwise", fc.elementwise(jnp.sin), (6, 6, 3)),
  ("MaxPool", fc.MaxPool((2, 2), strides=(2, 2)), (6, 6, 3)),
  ("MaxPool_overlapping", fc.MaxPool((3, 3), padding="SAME"), (6, 6, 3)),
  ("AvgPool", fc.AvgPool((3, 3), strides=(2, 2), padding="SAME", count_include_pad=False), (6, 6, 3)),
  ("SumPool", fc.SumPool((2, 2)), (6, 6, 3)),
  ("L2Pool", fc.L2Pool((2, 2), strides=(2, 2)), (6, 6, 3)),
  ("L2Pool_overlapping", fc.L2Pool((3, 3), padding="SAME"), (6, 6, 3)),
  ("GlobalAvgPool", fc.GlobalAvgPool, (6, 6, 3)),
  ("GlobalMaxPool", fc.GlobalMaxPool, (6, 6, 3)),
  ("AdaptiveAvgPool", fc.AdaptiveAvgPool((4, 4)), (6, 6, 3)),
  ("BatchNorm", fc.BatchNorm(), (6, 6, 4)),
  ("LayerNorm", fc.LayerNorm(), (6, 6, 4)),
  ("GroupNorm", fc.GroupNorm(num_groups=2), (6, 6, 4)),
  (
    "FanOut_parallel_FanInSum",
    fc.serial(fc.FanOut(2), fc.parallel(fc.Conv(3, (3, 3), padding="SAME"), fc.Identity), fc.FanInSum),
    (6, 6, 3),
  ),
  ("FanInConcat", fc.serial(fc.FanOut(2), fc.FanInConcat()), (6, 6, 3)),
  ("residual", fc.residual(fc.Conv(3, (3, 3), padding="SAME")), (6, 6, 3)),
  ("shape_dependent", fc.shape_dependent(lambda shape: fc.Dense(shape[-1])), (7,)),
  ("from_stax", fc.from_stax(stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.Relu)), (6, 6, 3)),
]


@pytest.mark.parametrize("layer,shape", [case[1:] for case in LAYERS], ids=[case[0] for case in LAYERS])
def test_layers_are_nan_free_forward_and_backward(layer, shape):
  assert_finite(forward_and_backward(layer, jax.random.normal(jax.random.key(2), (2, *shape))))


# The smallest configuration of each builder; (id, model, input shape of one example). The four largest (8-17 s
# each on 2 cores) run under `-m slow`: each of their layers is checked above, and tests/models runs each of them
# forward in training and evaluation (finite outputs) and traces its gradient.
def model_case(name, net, shape, slow=False):
  return pytest.param(net, shape, id=name, marks=[pytest.mark.slow] if slow else [])


MODELS = [
  model_case("small_cnn", models.small_cnn(), (8, 8, 1)),
  model_case("lenet5", models.lenet5(), (28, 28, 1)),
  model_case("alexnet", models.alexnet(num_classes=10), (63, 63, 3), slow=True),  # its smallest input
  model_case("vgg11", models.vgg(CONFIGS[11], 10, classifier_width=32), (32, 32, 3), slow=True),
  model_case("resnet_basic", models.resnet(basic_block, (1, 1, 1, 1), 10), (32, 32, 3)),  # ResNet-18/34's blocks
  model_case(  # ResNet-50/101/152's blocks
    "resnet_bottleneck", models.resnet(bottleneck_block, (1, 1, 1, 1), 10), (32, 32, 3), slow=True
  ),
  model_case("cifar_resnet8", models.cifar_resnet(8), (32, 32, 3)),  # ResNet-20 to 110's
  model_case("mobilenet_v1", models.mobilenet_v1(num_classes=10, width_multiplier=0.25), (32, 32, 3), slow=True),
]


@pytest.mark.parametrize("net,shape", MODELS)
def test_zoo_models_are_nan_free_forward_and_backward(net, shape):
  assert_finite(forward_and_backward(net, jax.random.normal(jax.random.key(2), (2, *shape))))


L2_POOLS = [fc.L2Pool((2, 2), strides=(2, 2)), fc.L2Pool((3, 3), strides=(2, 2), padding="SAME")]


@pytest.mark.parametrize("layer", L2_POOLS, ids=["tiling", "overlapping_padded"])
def test_l2_pool_at_zero_input_is_zero_with_gradient_zero(layer):
  """The L2 norm has no slope at 0 (sqrt's is infinite, times the squares' 0: NaN); `ops.l2_pool` takes the
  subgradient 0 (its values and gradients elsewhere: tests/ops/test_pool.py)."""
  evaluated, ((_, x_grad), trained) = forward_and_backward(layer, jnp.zeros((2, 6, 6, 4)))
  assert not jnp.any(evaluated) and not jnp.any(trained) and not jnp.any(x_grad)


@pytest.mark.parametrize(
  "layer", [fc.BatchNorm(), fc.LayerNorm(), fc.GroupNorm(num_groups=2)], ids=["BatchNorm", "LayerNorm", "GroupNorm"]
)
def test_normalisation_gradients_at_zero_input_are_finite(layer):
  """They divide by sqrt(var + epsilon): at var = 0 (a zero input, and in training a zero batch) that is finite."""
  assert_finite(forward_and_backward(layer, jnp.zeros((2, 6, 6, 4))))
