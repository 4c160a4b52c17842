"""A stand-in for ImageNet pretraining: an encoder trained on another task.

    python -m benchmarks.standin_encoder                # runs/standin/standin.weights.h5
    python main.py --flagfile=flags/scenes.cfg --stage=pretrain \\
        --encoder_weights=runs/standin/standin.weights.h5

ImageNet weights cannot be downloaded here, and the paper's claim (end to
end fine-tuning beats a frozen *pretrained* encoder) needs a pretrained
encoder. This trains the backbone of the scenes preset (keras.applications
InceptionV3 up to `mixed2`, 75 px, the encoder's own [-1, 1] preprocessing)
on a static image task that is not the scenes captions: telling apart 10
glyphs (ring, star, hexagon, crescent, bar, L, T, X, hourglass, half disc;
none of them a scenes shape) of any colour, size and place, one per image,
on plain, textured or noisy backgrounds with grey clutter, and saying the
glyph's colour (a second head: which of the 27 cells of the RGB cube, each
channel cut in three, holds it; no colour names).
Like ImageNet features, these know objects, edges and colour but were not
trained for where things are, how they move, or what the captions say.

Why the colour head (`--colour_weight`, default 0.5): a glyph classifier
alone learns features that ignore colour, since any glyph comes in any
colour. Measured with `benchmarks/scenes_probe.py`, the subject's colour
could not be read off those features at all (0.16-0.18, the majority class
0.18) where a random encoder's gave 0.30-0.37; ImageNet features, whose
classes differ in colour, do keep it. `--colour_weight=0` trains the
glyphs-only stand-in of the first scenes measurements. Held-out accuracy
and wall time of the defaults and the settings tried: docs/scenes.md
("The stand-in for ImageNet pretraining").

The weights are written as the whole no-top backbone
(`<name>.weights.h5`, written to a temporary name and renamed), so
`--encoder_weights=PATH` loads them exactly as it loads ImageNet's, at any
image size; layers above the trained feature layer keep their seeded random
initialisation (the preset does not use them). BatchNorm statistics are
those of the glyph images (no calibration on scenes frames happens for a
weights file, as for ImageNet). Deterministic: seeded data, weights and
order, TensorFlow op determinism on. A `<name>.json` beside the weights
records the settings, held-out accuracy and wall time.

Why a benchmarks/ script and not a stage: it is a fixture of the scenes
benchmark (the stand-in for a download), not part of training a captioner;
a stage would add flags and a job to the product for something no user of
real data needs (they use `--encoder_weights=imagenet`).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLYPHS = ("ring", "star", "hexagon", "crescent", "bar", "ell", "tee", "ex", "hourglass",
          "half_disc")


def _glyph_mask(glyph, x, y, r, angle):
    """Mask of a glyph of radius `r` centred at 0, turned by `angle`."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = c * x + s * y, -s * x + c * y
    d = np.hypot(x, y)
    if glyph == "ring":
        return (d <= r) & (d >= 0.6 * r)
    if glyph == "star":
        theta = np.arctan2(y, x)
        return d <= r * (0.55 + 0.45 * np.cos(5 * theta) ** 8)
    if glyph == "hexagon":
        a = np.abs(x), np.abs(y)
        return (a[1] <= 0.87 * r) & (0.5 * a[1] + 0.87 * a[0] <= 0.87 * r)
    if glyph == "crescent":
        return (d <= r) & (np.hypot(x - 0.45 * r, y) > 0.8 * r)
    if glyph == "bar":
        return (np.abs(x) <= r) & (np.abs(y) <= 0.3 * r)
    if glyph == "ell":
        box = (np.abs(x) <= r) & (np.abs(y) <= r)
        return box & ((x <= -0.4 * r) | (y >= 0.4 * r))
    if glyph == "tee":
        box = (np.abs(x) <= r) & (np.abs(y) <= r)
        return box & ((y <= -0.4 * r) | (np.abs(x) <= 0.3 * r))
    if glyph == "ex":
        box = (np.abs(x) <= r) & (np.abs(y) <= r)
        return box & ((np.abs(x - y) <= 0.4 * r) | (np.abs(x + y) <= 0.4 * r))
    if glyph == "hourglass":
        return (np.abs(y) <= r) & (np.abs(x) <= np.abs(y))
    return (d <= r) & (y <= 0)  # half disc


COLOUR_LEVELS = 3  # each RGB channel cut in three: 27 colour classes
GLYPH_RADIUS = (0.12, 0.3)  # a glyph's radius, fractions of the image side
OBJECT_SETS = ("glyphs", "scenes")  # what the images show: see `classes`


def _radius_range(text):
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (two numbers), got {text!r}") from None
    if not 0 < low <= high <= 0.5:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH <= 0.5, got {text!r}")
    return low, high


def colour_class(rgb):
    """The RGB-cube cell (0 to COLOUR_LEVELS ** 3 - 1) of colours `[..., 3]` in 0-255."""
    level = np.minimum((np.asarray(rgb) * COLOUR_LEVELS / 256).astype(int), COLOUR_LEVELS - 1)
    return (level[..., 0] * COLOUR_LEVELS + level[..., 1]) * COLOUR_LEVELS + level[..., 2]


def classes(objects):
    """The class names of the object set: "glyphs" or "scenes"."""
    if objects == "scenes":
        from etenet_tf.data import scenes
        return tuple(scenes.SHAPES)
    return GLYPHS


def _object_mask(objects, label, x, y, r, angle):
    if objects == "scenes":  # upright, as the scenes clips draw them
        from etenet_tf.data import scenes
        return scenes.shape_mask(scenes.SHAPES[label], x, y, r)
    return _glyph_mask(GLYPHS[label], x, y, r, angle)


def render_images(count, size, seed, glyph_radius=GLYPH_RADIUS, objects="glyphs"):
    """`(images uint8 [count, size, size, 3], labels int32 [count], colour
    classes int32 [count])` (`colour_class`): one object of `classes(objects)`
    per image, its radius drawn from `glyph_radius` (fractions of the side)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty(count, np.int32)
    colours = np.empty((count, 3), np.float32)
    for n in range(count):
        img = np.broadcast_to(rng.uniform(10, 120, size=3), (size, size, 3)).copy()
        kind = rng.integers(3)
        if kind == 1:  # stripes
            period, angle = rng.uniform(4, 14), rng.uniform(0, np.pi)
            img += (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
                    * rng.uniform(8, 25))[..., None]
        for _ in range(int(rng.integers(0, 3))):  # grey clutter blobs
            r = rng.uniform(0.04, 0.1) * size
            cx, cy = rng.uniform(0, size, size=2)
            img[np.hypot(xx - cx, yy - cy) <= r] = rng.uniform(70, 150)
        label = int(rng.integers(len(classes(objects))))
        r = rng.uniform(*glyph_radius) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        mask = _object_mask(objects, label, xx - cx, yy - cy, r, rng.uniform(0, 2 * np.pi))
        colours[n] = rng.uniform(0, 255, size=3)
        img[mask] = colours[n]
        img += rng.normal(0, 25 if kind == 2 else 6, size=(size, size, 1))
        images[n] = np.clip(img, 0, 255).astype(np.uint8)
        labels[n] = label
    return images, labels, colour_class(colours).astype(np.int32)


def calibrate_batchnorm(classifier, backbone, images, batch_size):
    """Sets the backbone's BatchNorm moving statistics to the average of
    its batch statistics over `images` (as `Encoder.calibrate_batchnorm`
    does for a random encoder). Training leaves them a momentum-0.99
    running average still close to their initial mean 0 / variance 1
    after a few hundred steps, so inference-mode features (a frozen
    encoder's, and the held-out score's) would not be the trained ones."""
    import keras
    norms = [layer for layer in backbone._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [n.momentum for n in norms]
    try:
        for count, start in enumerate(range(0, len(images), batch_size), 1):
            for n in norms:
                n.momentum = (count - 1) / count
            classifier(images[start:start + batch_size].astype(np.float32), training=True)
    finally:
        for n, momentum in zip(norms, saved):
            n.momentum = momentum


def train(output, encoder="inception_v3", feature_layer="mixed2", image_size=75, images=4000,
          epochs=10, batch_size=32, learning_rate=1e-3, colour_weight=0.5,
          glyph_radius=GLYPH_RADIUS, objects="glyphs", seed=0, log=print):
    """Trains the stand-in and writes its weights file; returns the report dict.

    Args:
        output: the weights file to write (must end in `.weights.h5`).
        encoder: a key of `etenet_tf.model.encoder.ENCODERS`.
        feature_layer: the layer the classifier reads (the preset's).
        image_size: image side in pixels.
        images: training images (a fifth as many more are held out).
        epochs, batch_size, learning_rate: the training schedule.
        colour_weight: weight of the colour head's cross-entropy beside
            the glyph's; 0 trains the glyph classifier alone.
        glyph_radius: `(low, high)`: a glyph's radius as a fraction of the
            image side is drawn uniformly from it.
        objects: "glyphs" (the stand-in for ImageNet) or "scenes": the
            scenes clips' own 5 shapes, a diagnostic encoder that knows
            what the captions name (not a stand-in: docs/scenes.md).
        seed: seed of the images, the initial weights and the order.
        log: where progress lines go.
    """
    import keras
    import tensorflow as tf

    from etenet_tf.files import atomic_path, write_json
    from etenet_tf.model import encoder as encoder_lib

    if not output.endswith(".weights.h5"):
        raise ValueError(f"the output must end in .weights.h5 (Keras' weights format): {output}")
    start = time.time()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    glyph_radius = tuple(float(r) for r in glyph_radius)
    if objects not in OBJECT_SETS:
        raise ValueError(f"objects must be 'glyphs' or 'scenes', not {objects!r}")
    names = classes(objects)
    x, y, rgb = render_images(images, image_size, seed, glyph_radius, objects)
    x_test, y_test, rgb_test = render_images(max(images // 5, 1), image_size, seed + 1,
                                             glyph_radius, objects)
    spec = encoder_lib.get_spec(encoder)
    backbone = spec.constructor(include_top=False, weights=None,
                                input_shape=(image_size, image_size, 3))
    inputs = keras.Input((image_size, image_size, 3))
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)  # preprocess_input "tf"
    features = keras.Model(backbone.input, backbone.get_layer(feature_layer).output)(scaled)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    # the colour head reads the strongest cell (the glyph's), not the
    # average over a background that is most of the image
    outputs = {"glyph": keras.layers.Dense(len(names), name="glyph")(pooled),
               "colour": keras.layers.Dense(COLOUR_LEVELS ** 3, name="colour")(
                   keras.layers.GlobalMaxPooling2D()(features))}
    classifier = keras.Model(inputs, outputs)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    classifier.compile(keras.optimizers.Adam(learning_rate),
                       loss={"glyph": cross_entropy, "colour": cross_entropy},
                       loss_weights={"glyph": 1.0, "colour": colour_weight},
                       metrics={"glyph": ["accuracy"], "colour": ["accuracy"]})
    targets = {"glyph": y, "colour": rgb}
    for epoch in range(epochs):
        history = classifier.fit(x.astype(np.float32), targets, batch_size=batch_size,
                                 epochs=1, shuffle=True, verbose=0).history
        log(f"stand-in epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.3f}, "
            f"train accuracy {history['glyph_accuracy'][-1]:.3f}, colour accuracy "
            f"{history['colour_accuracy'][-1]:.3f}")
    calibrate_batchnorm(classifier, backbone, x, batch_size)
    scores = classifier.evaluate(x_test.astype(np.float32), {"glyph": y_test, "colour": rgb_test},
                                 batch_size=batch_size, verbose=0, return_dict=True)
    accuracy, colour_accuracy = scores["glyph_accuracy"], scores["colour_accuracy"]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = f"{output[:-len('.weights.h5')]}.tmp-{os.getpid()}.weights.h5"
    with atomic_path(output, tmp=tmp) as path:
        backbone.save_weights(path)
    report = {"encoder": encoder, "feature_layer": feature_layer, "image_size": image_size,
              "images": images, "epochs": epochs, "batch_size": batch_size,
              "learning_rate": learning_rate, "colour_weight": colour_weight,
              "glyph_radius": list(glyph_radius), "seed": seed,
              "objects": objects, "classes": list(names), "held_out_accuracy": float(accuracy),
              "held_out_colour_accuracy": float(colour_accuracy),
              "seconds": time.time() - start,
              "weights": os.path.abspath(output)}
    write_json(output[:-len(".weights.h5")] + ".json", report)
    log(f"stand-in encoder: held-out glyph accuracy {accuracy:.3f} (chance "
        f"{1 / len(names):.2f}), colour accuracy {colour_accuracy:.3f} (chance "
        f"{COLOUR_LEVELS ** -3:.3f}) in {report['seconds']:.0f} s; weights: {output}")
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default=os.path.join(ROOT, "runs", "standin",
                                                    "standin.weights.h5"))
    p.add_argument("--encoder", default="inception_v3")
    p.add_argument("--feature_layer", default="mixed2")
    p.add_argument("--image_size", type=int, default=75)
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--colour_weight", type=float, default=0.5,
                   help="weight of the colour head's cross-entropy (0: glyphs only)")
    p.add_argument("--glyph_radius", type=_radius_range, default=GLYPH_RADIUS,
                   help="LOW,HIGH: a glyph's radius as fractions of the image side "
                        f"(default {GLYPH_RADIUS[0]},{GLYPH_RADIUS[1]})")
    p.add_argument("--objects", choices=OBJECT_SETS, default="glyphs",
                   help="glyphs: the stand-in for ImageNet; scenes: the scenes clips' own "
                        "shapes (a diagnostic encoder that knows what captions name)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.output.endswith(".weights.h5"):
        p.error("--output must end in .weights.h5")
    for name in ("image_size", "images", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.colour_weight < 0:
        p.error("--colour_weight must be >= 0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    report = train(log=lambda line: print(line, file=sys.stderr, flush=True), **vars(args))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
