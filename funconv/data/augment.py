"""Augmentation on the device, inside the jitted step, one PRNG key per example."""
import jax
import jax.numpy as jnp


def random_crop(key, image, padding):
  """Pad `image` `(H, W, C)` by `padding` zeros on each side and crop a random `(H, W, C)` window."""
  h, w, c = image.shape
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  top, left = jax.random.randint(key, (2,), 0, 2 * padding + 1)
  return jax.lax.dynamic_slice(padded, (top, left, 0), (h, w, c))


def random_flip(key, image):
  """Mirror `image` `(H, W, C)` left-right with probability 1/2."""
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def normalize(image, mean, std):
  """`(image - mean) / std`, per channel: `mean` and `std` scalars or `(C,)`."""
  per_channel = lambda v: jnp.broadcast_to(jnp.asarray(v, image.dtype), image.shape)
  return (image - per_channel(mean)) / per_channel(std)


def augmenter(crop_padding=0, flip=False):
  """A batch augmentation `fn(key, images) -> images` for `(N, H, W, C)` images: for each example,
  with its own key, a random crop after `crop_padding` pixels of zero padding and a random
  left-right flip. (Normalisation, which evaluation needs too, is the training step's `normalize=`.)

  Example:
    >>> augment = augmenter(crop_padding=4, flip=True)
    >>> images = augment(jax.random.key(0), images)
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
