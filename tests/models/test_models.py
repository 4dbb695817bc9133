"""The model zoo: exact parameter counts, shape inference without running, training, no native conv."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funconv as fc
from funconv import models

IMAGENET = (224, 224, 3)
PUBLISHED = [  # (constructor, kwargs, parameters at 1000 classes)
  (models.alexnet, {}, 61_100_840),
  (models.vgg11, {}, 132_863_336),
  (models.vgg13, {}, 133_047_848),
  (models.vgg16, {}, 138_357_544),
  (models.vgg19, {}, 143_667_240),
  (models.vgg11, dict(batch_norm=True), 132_868_840),
  (models.vgg16, dict(batch_norm=True), 138_365_992),
  (models.resnet18, {}, 11_689_512),
  (models.resnet34, {}, 21_797_672),
  (models.resnet50, {}, 25_557_032),
  (models.resnet101, {}, 44_549_160),
  (models.resnet152, {}, 60_192_808),
  (models.mobilenet_v1, {}, 4_231_976),
]


@pytest.mark.parametrize("make,kwargs,count", PUBLISHED, ids=lambda v: getattr(v, "__name__", str(v)))
def test_imagenet_parameter_counts_are_the_published_ones(make, kwargs, count):
  assert fc.summary(make(**kwargs), IMAGENET, print_fn=None)["params"] == count


@pytest.mark.parametrize(
  "make,millions",
  [
    (models.resnet20, 0.27),
    (models.resnet32, 0.46),
    (models.resnet44, 0.66),
    (models.resnet56, 0.85),
    (models.resnet110, 1.7),
  ],
)
def test_cifar_resnets_match_he_et_al_table_6(make, millions):
  params = fc.summary(make(), (32, 32, 3), print_fn=None)["params"]
  assert round(params / 1e6, 2 if millions < 1 else 1) == millions


def test_lenet5_count_and_both_input_sizes():
  assert fc.summary(models.lenet5(), (28, 28, 1), print_fn=None)["params"] == 61_706
  assert fc.summary(models.lenet5(activation="relu", pooling="max"), (32, 32, 1), print_fn=None)["params"] == 61_706


def test_resnet50_summary_counts_4_1_gmacs_without_running(capsys, monkeypatch):
  real = fc.ops.conv

  def abstract_only(x, *args, **kwargs):
    assert isinstance(x, jax.core.Tracer), "summary ran a convolution on concrete arrays"
    return real(x, *args, **kwargs)

  monkeypatch.setattr(fc.ops, "conv", abstract_only)
  info = fc.summary(models.resnet50(), IMAGENET)
  assert 4.0e9 < info["macs"] < 4.2e9
  table = capsys.readouterr().out
  assert "(56, 56, 256)" in table and "(7, 7, 2048)" in table


def test_building_vgg16_runs_no_convolution(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("init ran the network")

  monkeypatch.setattr(fc.ops, "conv", refuse)
  net = models.vgg16()
  shapes = jax.eval_shape(lambda k: net.init(k, IMAGENET)[1], jax.random.key(0))
  assert sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)) == 138_357_544


SMALL = [  # (name, model, input shape) small enough to compile and run in the default test run
  ("lenet5", models.lenet5(), (28, 28, 1)),
  ("alexnet", models.alexnet(num_classes=10), (64, 64, 3)),
  ("tiny_vgg", models.vgg((16, "M", 32, "M"), 10, batch_norm=True, classifier_width=32), (32, 32, 3)),
  ("resnet18", models.resnet18(num_classes=10), (32, 32, 3)),
  ("resnet20", models.resnet20(), (32, 32, 3)),
  ("mobilenet_v1", models.mobilenet_v1(num_classes=10, width_multiplier=0.25), (32, 32, 3)),
]
# AlexNet's and ResNet-18's layers run in the default run through the layer contract and test_numerics' ResNet
# blocks; their whole-model runs (7 s each on 2 cores) under -m slow.
BATCHED = [pytest.param(*s, id=s[0], marks=[pytest.mark.slow] * (s[0] in ("alexnet", "resnet18"))) for s in SMALL]


@pytest.mark.parametrize("name,net,shape", BATCHED)
def test_models_run_batched_in_train_and_eval(name, net, shape):
  out_shape, params, state = net.init(jax.random.key(0), shape)
  x = jax.random.normal(jax.random.key(1), (2, *shape))
  apply = jax.jit(fc.batched(net.apply), static_argnames="train")
  y_train, new_state = apply(params, state, x, key=jax.random.key(2), train=True)
  y_eval, _ = apply(params, new_state, x, train=False)
  assert y_train.shape == y_eval.shape == (2, *out_shape)
  assert bool(jnp.all(jnp.isfinite(y_eval)))


ALL = [  # every family and block kind (test_every_model_runs_batched_in_train_and_eval, -m slow, runs every model)
  models.lenet5(),
  models.alexnet(),
  models.vgg16(batch_norm=True),
  models.resnet34(),
  models.resnet50(),
  models.resnet20(),
  models.mobilenet_v1(),
]


@pytest.mark.parametrize(
  "net", ALL, ids=["lenet5", "alexnet", "vgg16_bn", "resnet34", "resnet50", "resnet20", "mobilenet_v1"]
)
def test_forward_and_gradient_programs_have_no_native_convolution(net):
  shape = (32, 32, 1) if net is ALL[0] else (64, 64, 3)
  params, state = jax.eval_shape(lambda k: net.init(k, shape)[1:], jax.random.key(0))
  x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)

  def loss(params, state, x):
    return jnp.sum(fc.batched(net.apply)(params, state, x, key=jax.random.key(0), train=True)[0])

  for program in (jax.make_jaxpr(loss)(params, state, x), jax.make_jaxpr(jax.grad(loss))(params, state, x)):
    assert "conv_general_dilated" not in str(program)


# ResNet-20's training (10 s on 2 cores) under -m slow; its blocks' gradients run in test_numerics (cifar_resnet8).
@pytest.mark.parametrize(
  "name,net,shape",
  [SMALL[0], pytest.param(*SMALL[4], marks=pytest.mark.slow), SMALL[2]],
  ids=["lenet5", "resnet20", "tiny_vgg"],
)
def test_a_few_training_steps_lower_the_loss(name, net, shape):
  _, params, state = net.init(jax.random.key(0), shape)
  x = jax.random.normal(jax.random.key(1), (16, *shape))
  y = jnp.arange(16) % 10
  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, state, opt_state, key):
    def loss_fn(params):
      logits, state_ = fc.batched(net.apply)(params, state, x, key=key, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state_

    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), state, opt_state, loss

  losses = []
  for i in range(8):
    params, state, opt_state, loss = step(params, state, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert losses[-1] < 0.7 * losses[0], losses


EVERY = [
  models.lenet5,
  models.alexnet,
  models.vgg11,
  models.vgg13,
  models.vgg16,
  models.vgg19,
  models.resnet18,
  models.resnet34,
  models.resnet50,
  models.resnet101,
  models.resnet152,
  models.resnet20,
  models.resnet32,
  models.resnet44,
  models.resnet56,
  models.resnet110,
  models.mobilenet_v1,
  models.small_cnn,
]


@pytest.mark.slow
@pytest.mark.parametrize("make", EVERY, ids=lambda m: m.__name__)
def test_every_model_runs_batched_in_train_and_eval(make):
  shape = {"lenet5": (28, 28, 1), "alexnet": (64, 64, 3), "small_cnn": (8, 8, 1)}.get(make.__name__, (32, 32, 3))
  net = make(num_classes=10)
  out_shape, params, state = net.init(jax.random.key(0), shape)
  x = jax.random.normal(jax.random.key(1), (2, *shape))
  apply = jax.jit(fc.batched(net.apply), static_argnames="train")
  y_train, new_state = apply(params, state, x, key=jax.random.key(2), train=True)
  y_eval, _ = apply(params, new_state, x, train=False)
  assert y_train.shape == y_eval.shape == (2, 10)
  assert bool(jnp.all(jnp.isfinite(y_eval)))
