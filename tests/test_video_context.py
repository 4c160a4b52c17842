"""The captioner sees frame order and position: the spatio-temporal options."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from etenet_tf.data import shapes
from etenet_tf.generation import BeamSampler, generate
from etenet_tf.model import encoder as encoder_lib
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.model.video_context import SpatioTemporalContext
from etenet_tf.text.vocabulary import SPECIAL_TOKENS, START_ID

VOCAB = list(SPECIAL_TOKENS) + ["a", "red", "circle", "moves", "left", "right"]
SMALL = dict(image_size=75, num_frames=4, embedding_dim=8, hidden_dim=12, attention_dim=8,
             dropout=0.0, context_dim=16)


def _model(**options):
    keras.utils.set_random_seed(3)
    return build_captioner(ModelConfig(**dict(SMALL, **options)), VOCAB)


def _clip(direction="right", seed=0):
    rng = np.random.default_rng(seed)
    return shapes.render_clip("red", "circle", direction, rng, num_frames=4, size=75)


def _next_word_probs(model, frames):
    """Distribution of the first generated word for uint8 frames [B, T, S, S, 3]."""
    constants, state = model.decoder.initial_state(model.memory(model.encode(frames)), 1)
    logits, _, _ = model.decoder.step(tf.fill([frames.shape[0]], START_ID), state, 0, constants)
    return tf.nn.softmax(logits).numpy()


@pytest.mark.parametrize("options", [dict(temporal="position"), dict(temporal="conv"),
                                     dict(temporal="gru", feature_layer="mixed2"),
                                     dict(temporal="delta", spatial_grid=3,
                                          feature_layer="mixed2"),
                                     dict(temporal="conv", spatial_grid=3,
                                          feature_layer="mixed2")])
def test_reversed_frames_change_the_next_word_with_temporal_information(options):
    model = _model(**options)
    clip = _clip()
    forward = _next_word_probs(model, clip[None])
    backward = _next_word_probs(model, clip[None, ::-1])
    assert np.abs(forward - backward).max() > 1e-4


def test_paper_mode_ignores_frame_order():
    model = _model()  # grid 1, temporal none: the paper's EtENet
    assert model.context is None and model.num_frames is None
    clip = _clip()
    forward = _next_word_probs(model, clip[None])
    backward = _next_word_probs(model, clip[None, ::-1])
    np.testing.assert_allclose(forward, backward, atol=1e-6)


def test_moving_the_object_to_another_cell_changes_the_attention_context():
    model = _model(spatial_grid=3, feature_layer="mixed2")
    empty = np.full((1, 4, 75, 75, 3), 40, np.uint8)
    left, right = empty.copy(), empty.copy()
    left[..., 5:20, 5:20, :] = (220, 40, 40)     # top-left cell
    right[..., 55:70, 55:70, :] = (220, 40, 40)  # bottom-right cell
    features = model.encode(np.concatenate([left, right, empty])).numpy()
    assert features.shape == (3, 4, 3, 3, 288)
    # the object changes the features of its own cell most...
    for clip, cell in ((0, (0, 0)), (1, (2, 2))):
        change = np.abs(features[clip] - features[2]).mean(axis=(0, -1))
        assert np.unravel_index(change.argmax(), change.shape) == cell
    # ...and what the decoder reads at the first word
    memory = model.memory(features[:2])
    (keys, projected), state = model.decoder.initial_state(memory, 1)
    _, _, alpha = model.decoder.step(tf.fill([2], START_ID), state, 0, (keys, projected))
    context = tf.einsum("bt,btg->bg", alpha, projected).numpy()
    assert np.abs(context[0] - context[1]).max() > 1e-3


def test_pooled_grid_is_the_average_of_its_cells():
    enc = encoder_lib.FrameEncoder("inception_v3", 75, spatial_grid=1, feature_layer="mixed2")
    grid = encoder_lib.FrameEncoder("inception_v3", 75, spatial_grid=7, feature_layer="mixed2")
    enc.build()
    grid.build()
    grid.backbone.set_weights(enc.backbone.get_weights())
    frames = np.random.default_rng(0).integers(0, 255, (1, 2, 75, 75, 3)).astype("uint8")
    # the 7x7 map pooled to 7x7 cells is the map itself; its mean is the 1x1 grid
    np.testing.assert_allclose(grid(frames).numpy().mean(axis=(2, 3)),
                               enc(frames).numpy()[:, :, 0, 0], rtol=1e-4, atol=1e-5)


def test_adaptive_pooling_matrix_covers_every_row():
    weights = encoder_lib._pooling_matrix(7, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (weights > 0).any(axis=0).all()


def test_grid_larger_than_the_feature_map_is_refused():
    with pytest.raises(encoder_lib.EncoderOptionError, match="larger than the 1x1 feature map"):
        encoder_lib.check_options("inception_v3", 75, spatial_grid=2)
    with pytest.raises(encoder_lib.EncoderOptionError, match="has no layer 'mixed99'"):
        encoder_lib.check_options("inception_v3", 75, 1, "mixed99")
    encoder_lib.check_options("inception_v3", 75, 3, "mixed7")  # 3x3 there


def test_context_layer_config_round_trip_and_shapes():
    layer = SpatioTemporalContext(4, spatial_grid=2, temporal="conv", context_dim=8)
    out = layer(tf.random.normal([3, 4, 2, 2, 5]))
    assert out.shape == (3, 16, 8)
    clone = SpatioTemporalContext.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="context_dim"):
        SpatioTemporalContext(4, temporal="conv", context_dim=0)
    with pytest.raises(ValueError, match="context_dim"):
        SpatioTemporalContext(4, temporal="delta", context_dim=0)


def test_delta_tokens_say_how_their_cell_changes():
    """`temporal="delta"` is `"gru"` plus each token's change term: with the
    same weights it gives gru's tokens on a clip where nothing changes, and
    where one cell changes at one frame, that cell's tokens differ from
    gru's in that frame and the two around it by more than the other cells'
    (which see the change only through the GRU summary), and not before or
    after."""
    keras.utils.set_random_seed(0)
    delta = SpatioTemporalContext(5, spatial_grid=2, temporal="delta", context_dim=8)
    gru = SpatioTemporalContext(5, spatial_grid=2, temporal="gru", context_dim=8)
    still = tf.tile(tf.random.normal([1, 1, 2, 2, 6]), [1, 5, 1, 1, 1])
    delta(still), gru(still)
    # gru's weights are delta's but the change layer's, in the same order
    shared = [v for v in delta.weights if all(v is not w for w in delta.change.weights)]
    assert [v.shape for v in shared] == [v.shape for v in gru.weights]
    for target, source in zip(gru.weights, shared):
        target.assign(source)
    delta.change.bias.assign(tf.ones_like(delta.change.bias) * -1.0)  # no change: no term
    np.testing.assert_allclose(delta(still).numpy(), gru(still).numpy(), atol=1e-6)
    delta.change.bias.assign(tf.zeros_like(delta.change.bias))
    clip = still.numpy().copy()
    clip[0, 2, 0, 0] += np.random.default_rng(1).normal(0, 3, 6)  # cell (0, 0), frame 2
    gap = np.abs(delta(clip).numpy() - gru(clip).numpy()).reshape(5, 4, 8).sum(-1)
    changed, others = gap[:, 0], gap[:, 1:].max(-1)
    assert (changed[1:4] > others[1:4] + 1e-3).all()
    np.testing.assert_allclose(changed[[0, 4]], others[[0, 4]], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    dict(temporal="gru", spatial_grid=3, feature_layer="mixed2"),
    dict(temporal="position", context_dim=0, feature_layer="mixed2")])
def test_keras_file_round_trip_gives_the_same_captions_and_trains(options, tmp_path):
    model = _model(**options)
    frames = np.stack([_clip("left", 1), _clip("right", 2)])
    features = model.encode(frames)
    ids, scores, attention = generate(model, features, BeamSampler(2), max_length=5)
    grid = options.get("spatial_grid", 1)
    assert attention.shape == (2, 1, 5, 4 * grid * grid)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(model.get_config(),
                                                                    sort_keys=True)
    again, again_scores, _ = generate(loaded, loaded.encode(frames), BeamSampler(2), max_length=5)
    np.testing.assert_array_equal(ids.numpy(), again.numpy())
    np.testing.assert_allclose(scores.numpy(), again_scores.numpy(), rtol=1e-5)
    # one fit step on tiny inputs moves the context layer
    from etenet_tf.model.losses import CaptionLoss
    tokens = np.array([[2, 4, 5, 6, 7], [2, 4, 5, 6, 8]], "int32")
    targets = np.array([[4, 5, 6, 7, 3], [4, 5, 6, 8, 3]], "int32")
    loaded.compile(optimizer=keras.optimizers.Adam(1e-2), loss=CaptionLoss())
    before = [w.numpy().copy() for w in loaded.context.trainable_weights]
    loaded.fit({"frames": frames, "tokens": tokens}, targets, epochs=1, verbose=0)
    after = loaded.context.trainable_weights
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, after))
