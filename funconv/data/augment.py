"""Augmentation on the device, inside the jitted step, one PRNG key per example.

`random_crop`, `random_flip` and `normalize` work on one image `(H, W, C)` (`normalize` on any
channels-last array); `augmenter` maps the random ones over a batch `(N, H, W, C)`. All are
jit-able and keep the shape and dtype.
"""

import jax
import jax.numpy as jnp


def random_crop(key, image, padding):
  """Pad `image` `(H, W, C)` by `padding` zeros on each side and crop a random `(H, W, C)` window.

  The window's top-left corner is uniform over the `(2 padding + 1)^2` offsets: the image shifted by
  up to `padding` pixels in each direction, zeros filling in.

  Args:
    key: a PRNG key.
    image: `(H, W, C)`, one image.
    padding: the pixels of zero padding on each side, a Python int >= 0 (0: the image unchanged).

  Returns:
    `(H, W, C)` in `image`'s dtype.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> image = jnp.ones((32, 32, 3))
    >>> crop = fc.data.random_crop(jax.random.key(0), image, 4)
    >>> crop.shape, crop.dtype, bool(crop.max() == 1.0)
    ((32, 32, 3), dtype('float32'), True)
  """
  h, w, c = image.shape
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  top, left = jax.random.randint(key, (2,), 0, 2 * padding + 1)
  return jax.lax.dynamic_slice(padded, (top, left, 0), (h, w, c))


def random_flip(key, image):
  """Mirror `image` `(H, W, C)` left-right (along `W`) with probability 1/2.

  Args:
    key: a PRNG key.
    image: `(H, W, C)`, one image.

  Returns:
    `(H, W, C)` in `image`'s dtype: `image` or `image[:, ::-1, :]`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> image = jnp.arange(3.0).reshape(1, 3, 1)
    >>> flipped = fc.data.random_flip(jax.random.key(0), image)
    >>> flipped[0, :, 0].tolist() in ([0.0, 1.0, 2.0], [2.0, 1.0, 0.0])
    True
  """
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def normalize(image, mean, std):
  """`(image - mean) / std`, per channel.

  Args:
    image: channels-last `(..., C)`, one image or a batch; floating.
    mean: a scalar or `(C,)`, cast to `image`'s dtype.
    std: a scalar or `(C,)`, likewise (not checked: 0 gives inf or NaN).

  Returns:
    `image`'s shape and dtype.

  Raises:
    ValueError: `mean` or `std` does not broadcast to `image`'s shape (from `jnp.broadcast_to`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> y = fc.data.normalize(jnp.ones((2, 32, 32, 3)), jnp.array([0.5, 0.25, 0.0]), 0.5)
    >>> y.shape, y[0, 0, 0].tolist()
    ((2, 32, 32, 3), [1.0, 1.5, 2.0])
  """
  per_channel = lambda v: jnp.broadcast_to(jnp.asarray(v, image.dtype), image.shape)
  return (image - per_channel(mean)) / per_channel(std)


def augmenter(crop_padding=0, flip=False):
  """A batch augmentation `fn(key, images) -> images` for `(N, H, W, C)` images.

  For each example, with its own key (`key` split `N` ways): a random crop after `crop_padding` pixels
  of zero padding (`random_crop`) and a random left-right flip (`random_flip`). (Normalisation, which
  evaluation needs too, is the training step's `normalize=`, or `normalize`.)

  Args:
    crop_padding: the padding of the random crop, an int >= 0 (default 0: no crop).
    flip: random left-right flips (default False).

  Returns:
    A jit-able function `(key, images) -> images`, `(N, H, W, C)` in and out, dtype kept.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import funconv as fc
    >>> augment = fc.data.augmenter(crop_padding=4, flip=True)
    >>> images = augment(jax.random.key(0), jnp.ones((2, 32, 32, 3)))
    >>> images.shape, images.dtype
    ((2, 32, 32, 3), dtype('float32'))
  """

  def one(key, image):
    crop_key, flip_key = jax.random.split(key)
    if crop_padding:
      image = random_crop(crop_key, image, crop_padding)
    if flip:
      image = random_flip(flip_key, image)
    return image

  def run(key, images):
    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)

  return run
