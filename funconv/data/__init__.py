"""Data: the embedded digits, readers and verified downloads of standard files, image folders, a deterministic
batch pipeline, augmentation."""

from funconv.data.augment import augmenter, normalize, random_crop, random_flip
from funconv.data.download import download, fetch, sha256_of
from funconv.data.images import (
  IMAGE_SUFFIXES,
  ImageError,
  ImageFolder,
  ImageFolderSource,
  decode_image,
  resolve_image_size,
  scan_image_folder,
)
from funconv.data.pipeline import batches, epoch_order, num_batches
from funconv.data.sets import DataSet, cifar10, cifar100, digits, idx_dataset, load, read_idx

__all__ = [
  "DataSet",
  "IMAGE_SUFFIXES",
  "ImageError",
  "ImageFolder",
  "ImageFolderSource",
  "augmenter",
  "batches",
  "cifar10",
  "cifar100",
  "decode_image",
  "digits",
  "download",
  "epoch_order",
  "fetch",
  "idx_dataset",
  "load",
  "normalize",
  "num_batches",
  "random_crop",
  "random_flip",
  "read_idx",
  "resolve_image_size",
  "scan_image_folder",
  "sha256_of",
]
