"""LeNet-5 (LeCun, Bottou, Bengio and Haffner 1998)."""
import funconv as fc
from funconv.ops.shapes import positive_int


def _choose(name, value, options):
  if value not in tuple(options):
    raise ValueError(f"lenet5: unknown {name} {value!r}; expected one of {', '.join(map(repr, options))}")
  return options[value]


def lenet5(num_classes=10, activation="tanh", pooling="avg"):
  """LeNet-5: C1 conv 5x5x6, S2 pool, C3 conv 5x5x16, S4 pool, C5 conv 5x5x120, F6 dense 84, output (the
  layers' names; the activations after them are `act1`, `act3`, `act5`, `act6`).

  For 32x32x1 inputs as in the paper, or 28x28x1 (MNIST) padded by 2 in C1 to the same
  geometry: C1 pads every input up to 32x32. `activation` is `"tanh"` (the paper's scaled tanh,
  unscaled here) or `"relu"`; `pooling` `"avg"` (the paper's subsampling) or `"max"`.

  Parameters: 61,706 for 10 classes. The paper's network has about 60,000: its C3 connects each
  map to a subset of S2's maps (1,516 weights against the full 2,416 here), its S2/S4 layers
  have a trainable coefficient and bias per map (32 in all, none here), and its output layer is
  RBF units (840 fixed weights against 850 trainable here). The full connections are what
  modern re-implementations (and this count) use.

  Example:
    >>> fc.summary(lenet5(), (28, 28, 1))["params"]
    61706
  """
  positive_int(num_classes, "num_classes", "lenet5")
  act = _choose("activation", activation, {"tanh": fc.Tanh, "relu": fc.Relu})
  pool = _choose("pooling", pooling, {"avg": fc.AvgPool, "max": fc.MaxPool})((2, 2), strides=(2, 2))
  c1 = fc.shape_dependent(lambda shape: fc.Conv(6, (5, 5), padding=[(max((32 - n) // 2, 0),) * 2 for n in shape[:2]]))
  return fc.serial(C1=c1, act1=act, S2=pool, C3=fc.Conv(16, (5, 5)), act3=act, S4=pool, C5=fc.Conv(120, (5, 5)),
                   act5=act, flatten=fc.Flatten, F6=fc.Dense(84), act6=act, output=fc.Dense(num_classes))
