"""A small convolutional backbone, built the way keras.applications builds
its networks (`include_top`, `weights`, `input_shape`).

It is the `small_cnn` entry of the encoder registry: a frame encoder that
builds in a fraction of a second and traces in a few, for smoke runs,
tests of everything but the ImageNet encoder itself, and machines where
InceptionV3 is too slow to try an idea. It has no ImageNet weights
(`--encoder_weights=imagenet` is refused with one line); a weights file it
wrote itself (`save_weights`) loads through `--encoder_weights=PATH` as
any backbone's does.

Layout: `blocks` blocks of a stride-2 3x3 convolution, BatchNormalization
and ReLU; block `i` (from 1) has `width * 2**(i - 1)` channels and its
last layer is named `block{i}`, so `--feature_layer=block2` cuts there and
`--finetune_blocks=N` unfreezes the top N blocks. At 75 px the maps are
38, 19, 10 and 5 cells wide.
"""

import keras

from etenet_tf.errors import UsageError, no_imagenet_weights


def SmallCNN(include_top=False, weights=None, input_shape=None, blocks=4, width=16,
             name="small_cnn"):
    """The small backbone as a functional `keras.Model` `[N, S, S, 3]` ->
    `[N, S / 2**blocks, S / 2**blocks, width * 2**(blocks - 1)]`.

    Args:
        include_top: must be False (there is no classifier head).
        weights: None (random initialisation) or a weights file written by
            `save_weights` of this network.
        input_shape: `(S, S, 3)`.
        blocks: number of stride-2 blocks.
        width: channels of the first block (doubled in each next one).
        name: the model's name.
    """
    if include_top:
        raise UsageError("small_cnn has no classifier top: build it with include_top=False")
    if weights == "imagenet":
        raise UsageError(no_imagenet_weights(name))
    inputs = keras.Input(input_shape or (None, None, 3), name="input_layer")
    x = inputs
    for i in range(1, blocks + 1):
        x = keras.layers.Conv2D(width * 2 ** (i - 1), 3, strides=2, padding="same",
                                use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{i}")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model
