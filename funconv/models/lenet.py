"""LeNet-5 (LeCun, Bottou, Bengio and Haffner 1998)."""

from funconv.combinators import serial, shape_dependent
from funconv.layers import AvgPool, Conv, Dense, Flatten, MaxPool, Relu, Tanh
from funconv.ops.shapes import positive_int


def _choose(name, value, options):
  if value not in tuple(options):
    raise ValueError(f"lenet5: unknown {name} {value!r}; expected one of {', '.join(map(repr, options))}")
  return options[value]


def lenet5(num_classes=10, activation="tanh", pooling="avg"):
  """LeNet-5 (LeCun et al. 1998): C1 conv 5x5 (6), S2 pool 2x2/2, C3 conv 5x5 (16), S4 pool,
  C5 conv 5x5 (120), F6 dense 84, output dense `num_classes`.

  The layers are named `C1`, `S2`, `C3`, `S4`, `C5`, `F6`, `output`, as in the paper; the
  activations after them `act1`, `act3`, `act5`, `act6`, and `flatten` comes after `act5`.
  Per example `(H, W, C) -> (num_classes,)` logits (no softmax): 32x32x1 inputs as in the
  paper, or 28x28x1 (MNIST), which C1 pads by `(32 - H) // 2` (and `(32 - W) // 2`) on each
  side to the paper's geometry; inputs of 32 or more are not padded (then C5's output is larger
  than 1x1 and F6's input wider).

  Parameters: 61,706 for 10 classes (state `()`). The paper's network has about 60,000: its C3
  connects each map to a subset of S2's maps (1,516 weights against the full 2,416 here), its
  S2/S4 layers have a trainable coefficient and bias per map (32 in all, none here), and its
  output layer is RBF units (840 fixed weights against 850 trainable here). The full
  connections are what modern re-implementations (and this count) use.

  Args:
    num_classes: the number of outputs, an int >= 1 (default 10).
    activation: `"tanh"` (default; the paper's scaled tanh, unscaled here) or `"relu"`.
    pooling: `"avg"` (default; the paper's subsampling, without its trainable coefficients) or
      `"max"`.

  Returns:
    A `Layer` (a `serial` of named layers).

  Raises:
    TypeError: `num_classes` is not an int.
    ValueError: `num_classes` below 1; an unknown `activation` or `pooling`.

  Examples:
    >>> import funconv as fc
    >>> net = fc.models.lenet5()
    >>> fc.summary(net, (28, 28, 1), print_fn=None)["params"]
    61706
    >>> rows = fc.summary(net, (28, 28, 1), print_fn=None)["rows"]
    >>> [(row["name"], row["output_shape"]) for row in rows if row["type"] != "Tanh"]
    [('C1', (28, 28, 6)), ('S2', (14, 14, 6)), ('C3', (10, 10, 16)), ('S4', (5, 5, 16)), ('C5', (1, 1, 120)),
     ('flatten', (120,)), ('F6', (84,)), ('output', (10,))]
    >>> fc.summary(fc.models.lenet5(activation="relu", pooling="max"), (32, 32, 1), print_fn=None)["params"]
    61706
  """
  positive_int(num_classes, "num_classes", "lenet5")
  act = _choose("activation", activation, {"tanh": Tanh, "relu": Relu})
  pool = _choose("pooling", pooling, {"avg": AvgPool, "max": MaxPool})((2, 2), strides=(2, 2))
  c1 = shape_dependent(lambda shape: Conv(6, (5, 5), padding=[(max((32 - n) // 2, 0),) * 2 for n in shape[:2]]))
  return serial(
    C1=c1,
    act1=act,
    S2=pool,
    C3=Conv(16, (5, 5)),
    act3=act,
    S4=pool,
    C5=Conv(120, (5, 5)),
    act5=act,
    flatten=Flatten,
    F6=Dense(84),
    act6=act,
    output=Dense(num_classes),
  )
