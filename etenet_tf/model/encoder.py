"""Per-frame CNN encoders: keras.applications backbones, and a small one.

A registry entry says how to build a backbone, where Keras caches its
ImageNet weights, its smallest input, and which layers end a block (for
"unfreeze the top N blocks"). Adding another keras.applications backbone
is one more `EncoderSpec`. `small_cnn` (`etenet_tf.model.small_cnn`) has
no ImageNet weights: it is for smoke runs and for tests of everything
but the ImageNet encoder.
"""

import dataclasses
import functools
import os
import re

import keras
import numpy as np
from keras import ops
from keras.applications import imagenet_utils

from etenet_tf.errors import UsageError, UserError, no_imagenet_weights
from etenet_tf.model import remat as remat_lib
from etenet_tf.model.small_cnn import SmallCNN

_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications"


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """How to build one keras.applications backbone.

    Args:
        constructor: the keras.applications function.
        weights_file: file name of the no-top ImageNet weights in the Keras
            cache (`~/.keras/models/`); None: the backbone has no ImageNet
            weights (`--encoder_weights=imagenet` is refused).
        weights_url: the directory URL Keras downloads that file from.
        weights_hash: the file's hash as `keras.applications` checks it
            (md5), for `keras.utils.get_file`.
        min_image_size: smallest input side the architecture accepts.
        block_end_pattern: regex matching the layers that end a block.
        preprocessing: `keras.applications.imagenet_utils.preprocess_input`
            mode the ImageNet weights expect (`"tf"`: [-1, 1], `"torch"`,
            `"caffe"`), or `"none"` for networks that rescale inside.
    """

    constructor: object
    weights_file: str | None
    weights_url: str | None
    weights_hash: str | None
    min_image_size: int
    block_end_pattern: str
    preprocessing: str = "tf"


ENCODERS = {
    "inception_v3": EncoderSpec(
        constructor=keras.applications.InceptionV3,
        weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=f"{_WEIGHTS_URL}/inception_v3/",
        weights_hash="bcbd6486424b2319ff4ef7d526e38f63",
        min_image_size=75,
        block_end_pattern=r"^mixed\d+$",
    ),
    "inception_resnet_v2": EncoderSpec(
        constructor=keras.applications.InceptionResNetV2,
        weights_file="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=f"{_WEIGHTS_URL}/inception_resnet_v2/",
        weights_hash="d19885ff4a710c122648d3b5c3b684e4",
        min_image_size=75,
        block_end_pattern=r"^(mixed_5b|mixed_6a|mixed_7a|block\d+_\d+_ac)$",
    ),
    "small_cnn": EncoderSpec(
        constructor=SmallCNN, weights_file=None, weights_url=None, weights_hash=None,
        min_image_size=32, block_end_pattern=r"^block\d+$",
    ),
}


class EncoderWeightsError(UserError):
    """Encoder weights were asked for but cannot be found or fetched."""


class EncoderWeightsMismatchError(UsageError):
    """A weights file that does not fit the encoder (another network's file,
    other layer shapes, a truncated or damaged file): exit status 2."""


def _load_failure(encoder_name, weights, error):
    """The one-line `EncoderWeightsMismatchError` of a weights file that the
    backbone refused."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError):
        reason = "not a complete HDF5 file: truncated or damaged"
        if "truncated" not in text:
            reason = f"not a readable HDF5 weights file ({text[:120]})"
    else:
        # Keras: "A total of N objects could not be loaded. Example error message
        # for object <Conv2D name=conv2d, built=True>: <why> List of objects ..."
        found = re.match(r"A total of (\d+) objects could not be loaded\. Example error message "
                         r"for object <\w+ name=([^,>]+)[^>]*>:\s*(.*?)(\s*List of objects.*)?$",
                         text)
        if found:
            text = f"{found[1]} layers could not be loaded, e.g. {found[2]}: {found[3]}"
        reason = text if len(text) <= 300 else text[:297] + "..."
    if get_spec(encoder_name).weights_file is None:  # no ImageNet file to point at
        fix = f"a weights file of {encoder_name} (its save_weights) or"
    else:
        fix = (f"a {encoder_name} no-top weights file (as keras.applications or `python -m "
               "benchmarks.standin_encoder` write them), --encoder_weights=imagenet or")
    return EncoderWeightsMismatchError(
        f"encoder weights {weights} do not fit {encoder_name} ({reason}): pass {fix} "
        "--encoder_weights=none")


def get_spec(encoder_name):
    if encoder_name not in ENCODERS:
        raise ValueError(
            f"unknown encoder {encoder_name!r}; choose one of {', '.join(sorted(ENCODERS))}"
        )
    return ENCODERS[encoder_name]


def keras_home():
    """Keras' home directory: `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras`
    when the home directory cannot be written), as Keras decides it."""
    if os.environ.get("KERAS_HOME"):
        return os.environ["KERAS_HOME"]
    home = os.path.expanduser("~")
    return os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")


def keras_cache_dir():
    """Keras' model cache: `<keras_home()>/models`."""
    return os.path.join(keras_home(), "models")


def resolve_weights(encoder_name, weights):
    """Maps the `--encoder_weights` value to what keras.applications takes.

    Args:
        encoder_name: a key of `ENCODERS`.
        weights: `"imagenet"`, `"none"`/None (random init) or a file path.

    Returns:
        None or the path of an existing weights file. ImageNet weights come
        from the Keras cache, downloaded into it first when missing (or
        damaged) with `keras.utils.get_file` and checked against the hash
        `keras.applications` uses, as `keras.applications` does.

    Raises:
        EncoderWeightsError: a weights file is missing, or the download
            failed (offline); one line naming the file, the URL and where
            to put it.
    """
    if weights is None or str(weights).lower() == "none":
        return None
    spec = get_spec(encoder_name)
    if weights == "imagenet":
        if spec.weights_file is None:
            raise EncoderWeightsError(no_imagenet_weights(encoder_name))
        url = spec.weights_url + spec.weights_file
        cache = keras_cache_dir()
        try:
            return keras.utils.get_file(spec.weights_file, url, cache_subdir="models",
                                        file_hash=spec.weights_hash, cache_dir=keras_home())
        except Exception as e:  # urllib errors, a hash mismatch, a cache that cannot be written
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if reason.startswith("URL fetch failure on "):  # "... on URL: code -- reason"
                reason = reason.split(" -- ", 1)[-1]
            raise EncoderWeightsError(
                f"cannot download the ImageNet weights of {encoder_name} ({reason}): download "
                f"{url} on a machine with internet access and put it in {cache}/ (named "
                f"{spec.weights_file}), or pass --encoder_weights=/path/to/{spec.weights_file} "
                "(or --encoder_weights=none for random initialisation)") from None
    if not os.path.isfile(weights):
        raise EncoderWeightsError(
            f"encoder weights file not found: {weights} (expected a Keras .h5/.weights.h5 "
            f"file such as {spec.weights_file or encoder_name + '.weights.h5'})"
        )
    return weights


def _pooling_matrix(size, cells):
    """`[cells, size]` averaging weights of adaptive average pooling: cell
    `i` averages rows `floor(i * size / cells)` .. `ceil((i + 1) * size / cells) - 1`
    (as torch's AdaptiveAvgPool does), so every row is used and cells may overlap
    by one row when `size` is not a multiple of `cells`."""
    weights = np.zeros((cells, size), np.float32)
    for i in range(cells):
        lo, hi = (i * size) // cells, -(-((i + 1) * size) // cells)
        weights[i, lo:hi] = 1.0 / (hi - lo)
    return weights


class EncoderOptionError(UsageError):
    """An encoder option the chosen backbone cannot give (grid too large,
    unknown feature layer, image too small)."""


def build_backbone(encoder_name, image_size, feature_layer=None, weights=None):
    """The keras.applications backbone without its top, cut at `feature_layer`.

    Args:
        encoder_name: a key of `ENCODERS`.
        image_size: input side in pixels.
        feature_layer: name of the layer whose output is the feature map
            (None: the backbone's last layer).
        weights: None or a weights file (see `resolve_weights`).

    Returns:
        A functional `keras.Model` mapping `[N, S, S, 3]` to `[N, H, W, C]`.

    Raises:
        EncoderOptionError: `feature_layer` is not a layer of the backbone.
        EncoderWeightsMismatchError: the weights file does not fit the
            backbone (Keras checks every variable's shape and count).
    """
    spec = get_spec(encoder_name)
    try:
        backbone = spec.constructor(include_top=False, weights=weights,
                                    input_shape=(image_size, image_size, 3))
    except (ValueError, OSError, KeyError, TypeError) as e:
        if weights is None:
            raise
        raise _load_failure(encoder_name, weights, e) from None
    if not feature_layer:
        return backbone
    try:
        layer = backbone.get_layer(feature_layer)
    except ValueError:
        ends = [layer.name for layer in backbone.layers
                if re.match(spec.block_end_pattern, layer.name)]
        raise EncoderOptionError(
            f"{encoder_name} has no layer {feature_layer!r}; block outputs are "
            f"{', '.join(ends)}") from None
    return keras.Model(backbone.input, layer.output, name=f"{backbone.name}_to_{feature_layer}")


@functools.lru_cache(maxsize=64)
def feature_map_size(encoder_name, image_size, feature_layer=None):
    """`(height, width, channels)` of the encoder's feature map for frames of
    `image_size` pixels (builds the backbone without weights, once per
    process for each set of arguments: InceptionV3 takes 2-3 s to build)."""
    return tuple(build_backbone(encoder_name, image_size, feature_layer).output_shape[1:])


def check_options(encoder_name, image_size, spatial_grid=1, feature_layer=None):
    """Raises `EncoderOptionError` with a one-line reason when the backbone
    cannot give a `spatial_grid` x `spatial_grid` grid at this size."""
    spec = get_spec(encoder_name)
    if image_size < spec.min_image_size:
        raise EncoderOptionError(f"image size {image_size} is below the {encoder_name} minimum "
                                 f"of {spec.min_image_size}")
    if spatial_grid < 1:
        raise EncoderOptionError(f"spatial grid {spatial_grid} must be >= 1")
    if spatial_grid == 1 and not feature_layer:
        return  # every backbone's last map has a cell
    height, width, _ = feature_map_size(encoder_name, image_size, feature_layer)
    if spatial_grid > min(height, width):
        raise EncoderOptionError(
            f"spatial grid {spatial_grid} is larger than the {height}x{width} feature map of "
            f"{encoder_name} ({feature_layer or 'last layer'}) at {image_size} px: use a grid "
            f"<= {min(height, width)}, a larger image size or an earlier feature layer")


@keras.saving.register_keras_serializable(package="etenet_tf")
class FrameEncoder(keras.layers.Layer):
    """Applies an ImageNet CNN to every frame and pools each frame to a grid.

    Input: frames `[batch, frames, size, size, 3]`, RGB in [0, 255] (any
    dtype). Preprocessing (the backbone's own ImageNet normalisation, see
    `EncoderSpec.preprocessing`) happens inside, so the exported model
    takes raw pixels. The backbone always runs with `training=False`:
    BatchNorm uses its moving statistics, also when fine-tuned, as is
    usual with small video batches.

    Training-time gradient checkpointing (`set_remat`, `--remat`) runs the
    backbone as segments under `keras.remat`; it is not part of the config,
    so saved models and `.keras` files do not depend on it.

    Output: `[batch, frames, grid, grid, channels]`. With `spatial_grid=1`
    each frame is one global-average-pooled vector (the paper's EtENet);
    with `N > 1` the feature map is average-pooled to N x N cells, so
    where things are in the frame is kept.

    Args:
        encoder_name: a key of `ENCODERS`.
        image_size: side of the input frames.
        spatial_grid: cells per side of the pooled feature grid.
        feature_layer: backbone layer whose output is pooled (None: the
            last one). An earlier layer has a larger map at small sizes
            (InceptionV3 at 75 px: `mixed7` is 3x3, the last layer 1x1)
            and costs less to run.
        encoder_weights: `"imagenet"`, `"none"`/None, or a weights file; used
            only when the layer is first built (a saved model carries its
            own weights, so `get_config` records None).
    """

    def __init__(self, encoder_name="inception_v3", image_size=299, spatial_grid=1,
                 feature_layer=None, encoder_weights=None, **kwargs):
        super().__init__(**kwargs)
        spec = get_spec(encoder_name)
        if image_size < spec.min_image_size:
            raise EncoderOptionError(
                f"image size {image_size} is below the {encoder_name} minimum of "
                f"{spec.min_image_size}"
            )
        self.encoder_name = encoder_name
        self.image_size = image_size
        self.spatial_grid = spatial_grid
        self.feature_layer = feature_layer or None
        self.encoder_weights = encoder_weights
        self.remat = "none"
        self._remat_plan = None  # a plain object: Keras and checkpoints do not track it

    def build(self, input_shape=None):
        self.backbone = build_backbone(
            self.encoder_name, self.image_size, self.feature_layer,
            resolve_weights(self.encoder_name, self.encoder_weights))
        height, width, _ = self.backbone.output_shape[1:]
        if self.spatial_grid > min(height, width):
            check_options(self.encoder_name, self.image_size, self.spatial_grid,
                          self.feature_layer)
        # adaptive average pooling as two small constant matrices
        self._pool_rows = _pooling_matrix(height, self.spatial_grid)
        self._pool_cols = _pooling_matrix(width, self.spatial_grid)
        self.built = True

    @property
    def output_dim(self):
        return self.backbone.output_shape[-1]

    def _preprocess(self, frames):
        x = ops.cast(frames, self.compute_dtype)
        mode = get_spec(self.encoder_name).preprocessing
        if mode == "none":
            return x
        return imagenet_utils.preprocess_input(x, mode=mode)

    def _pool(self, feature_maps):
        """`[N, H, W, C]` -> `[N, grid, grid, C]` (adaptive average pooling)."""
        rows = ops.cast(self._pool_rows, feature_maps.dtype)
        cols = ops.cast(self._pool_cols, feature_maps.dtype)
        return ops.einsum("gh,nhwc,kw->ngkc", rows, feature_maps, cols)

    def call(self, frames, training=None):
        shape = ops.shape(frames)
        x = ops.reshape(self._preprocess(frames), (-1, self.image_size, self.image_size, 3))
        if training and self._remat_plan is not None:
            maps = self._remat_plan(x)  # (the backbone's own layers, in segments)
        else:
            maps = self.backbone(x, training=False)
        grid = self._pool(maps)
        return ops.reshape(grid, (shape[0], shape[1], self.spatial_grid, self.spatial_grid,
                                  self.output_dim))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.spatial_grid, self.spatial_grid, self.output_dim)

    def set_trainable_blocks(self, num_blocks):
        """Freezes the backbone except its top `num_blocks` blocks.

        Args:
            num_blocks: 0 freezes everything, -1 (or more blocks than the
                network has) unfreezes everything.
        """
        if num_blocks < -1:
            raise ValueError("num_blocks must be -1 (all), 0 (none) or a block count")
        layers = self.backbone.layers
        first = 0
        if num_blocks > 0:
            pattern = re.compile(get_spec(self.encoder_name).block_end_pattern)
            ends = [i for i, layer in enumerate(layers) if pattern.match(layer.name)]
            first = ends[-num_blocks - 1] + 1 if num_blocks < len(ends) else 0
        self.trainable = True  # resets every sublayer, then freeze below `first`
        for i, layer in enumerate(layers):
            layer.trainable = i >= first
        self.trainable = num_blocks != 0
        if self.remat != "none":  # the frozen part changed: plan again (none when all is)
            self.set_remat(self.remat if num_blocks != 0 else "none")

    def set_remat(self, mode):
        """Gradient checkpointing of the backbone in training calls.

        Args:
            mode: `none`, `blocks` or `planned` (see `etenet_tf.model.remat`).
                Call it after `set_trainable_blocks` (which plans again
                anyway): layers below the first trainable one are never
                recomputed.

        Returns:
            The `RematPlan`, or None for `none`.

        Raises:
            ValueError: an unknown mode, or a frozen encoder (it has no
                backward pass to save memory in).
        """
        if mode not in remat_lib.REMAT_MODES:
            raise ValueError(f"unknown remat mode {mode!r}; choose one of "
                             f"{', '.join(remat_lib.REMAT_MODES)}")
        if mode != "none" and not self.trainable_weights:
            raise ValueError(f"remat {mode!r} on a frozen encoder: no gradient flows through it, "
                             "so there is nothing to recompute")
        self.remat = mode
        self._remat_plan = None if mode == "none" else remat_lib.plan_remat(
            self.backbone, mode, get_spec(self.encoder_name).block_end_pattern)
        return self._remat_plan

    def calibrate_batchnorm(self, frame_batches):
        """Estimates BatchNorm moving statistics from data.

        For a randomly initialised backbone (`encoder_weights="none"`) the
        initial statistics (mean 0, variance 1) are wrong by orders of
        magnitude and the features collapse to near-constants. Running
        the backbone in training mode over a few batches with a running
        average (momentum `(k-1)/k` at batch `k`) sets them to the data's
        statistics. No weight is trained.

        Args:
            frame_batches: iterable of frame tensors `[batch, frames, s, s, 3]`.

        Returns:
            Number of batches used.
        """
        norms = [layer for layer in self.backbone._flatten_layers()
                 if isinstance(layer, keras.layers.BatchNormalization)]
        saved = [(n.momentum, n.trainable) for n in norms]
        count = 0
        try:
            for frames in frame_batches:
                count += 1
                for n in norms:
                    # a frozen Keras BatchNorm ignores training=True
                    n.trainable = True
                    n.momentum = (count - 1) / count
                x = ops.reshape(self._preprocess(frames),
                                (-1, self.image_size, self.image_size, 3))
                self.backbone(x, training=True)
        finally:
            for n, (momentum, trainable) in zip(norms, saved):
                n.momentum, n.trainable = momentum, trainable
        return count

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder_name": self.encoder_name,
            "image_size": self.image_size,
            "spatial_grid": self.spatial_grid,
            "feature_layer": self.feature_layer,
            # the weights travel with the saved model, not as a file path
            "encoder_weights": None,
        })
        return config
