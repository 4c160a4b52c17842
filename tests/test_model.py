import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from etenet_tf.errors import UsageError
from etenet_tf.generation import BeamSampler, GreedySampler, generate
from etenet_tf.model import encoder as encoder_lib
from etenet_tf.model.attention_lstm import SoftAttentionLSTM
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.model.losses import CaptionLoss
from etenet_tf.text.vocabulary import END_ID, SPECIAL_TOKENS, START_ID

VOCAB = list(SPECIAL_TOKENS) + ["a", "red", "circle", "moves", "left"]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return build_captioner(ModelConfig(image_size=75, num_frames=3, embedding_dim=8,
                                       hidden_dim=12, attention_dim=8, dropout=0.0), VOCAB)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (2, 3, 75, 75, 3)).astype("uint8")
    tokens = np.array([[2, 4, 5, 6, 7], [2, 4, 5, 0, 0]], "int32")
    targets = np.array([[4, 5, 6, 7, 3], [4, 5, 3, 0, 0]], "int32")
    return frames, tokens, targets


def test_attention_layer_shapes_and_weights():
    layer = SoftAttentionLSTM(9, embedding_dim=4, hidden_dim=6, attention_dim=5)
    feats = tf.random.normal([3, 7, 10])
    logits, alpha = layer(feats, tf.zeros([3, 4], tf.int32), return_attention=True)
    assert logits.shape == (3, 4, 9) and alpha.shape == (3, 4, 7)
    np.testing.assert_allclose(tf.reduce_sum(alpha, -1).numpy(), 1.0, rtol=1e-5)


def test_padding_never_changes_earlier_outputs():
    layer = SoftAttentionLSTM(9, embedding_dim=4, hidden_dim=6, attention_dim=5, dropout=0.0)
    feats = tf.random.normal([1, 3, 10])
    a = layer(feats, tf.constant([[2, 4, 3, 0, 0]]))
    b = layer(feats, tf.constant([[2, 4, 3, 7, 8]]))
    np.testing.assert_allclose(a[:, :3].numpy(), b[:, :3].numpy(), rtol=1e-6)


def test_decoder_equals_its_equations_with_a_keras_lstm_cell():
    """Applying the context weights per frame (see SoftAttentionLSTM) gives
    the documented equations, run word by word with a Keras LSTMCell fed
    [E y; c_t] and the deep output computed from c_t."""
    layer = SoftAttentionLSTM(9, embedding_dim=4, hidden_dim=6, attention_dim=5, dropout=0.0)
    feats = tf.random.normal([2, 3, 10])
    tokens = tf.constant([[2, 4, 5, 6], [2, 7, 3, 0]])
    logits, attention = layer(feats, tokens, return_attention=True)
    context_kernel = layer.context_kernel.numpy()
    gate_kernel, l_c = context_kernel[:, :24], context_kernel[:, 24:]
    cell = keras.layers.LSTMCell(6)
    cell.build((None, 14))
    cell.set_weights([np.concatenate([layer.word_kernel.numpy(), gate_kernel]),
                      layer.recurrent_kernel.numpy(), layer.gate_bias.numpy()])
    values = layer.feature_norm(feats)
    keys = layer.feature_key(values)
    state = [layer.init_h(tf.reduce_mean(values, 1)), layer.init_c(tf.reduce_mean(values, 1))]
    for t in range(tokens.shape[1]):
        embedded = layer.embedding(tokens[:, t])
        scores = layer.attention_score(tf.tanh(keys + layer.hidden_query(state[0])[:, None]))
        alpha = tf.nn.softmax(scores[..., 0], -1)
        context = tf.reduce_sum(alpha[..., None] * values, 1)
        h, state = cell(tf.concat([embedded, context], -1), state)
        out = tf.tanh(layer.output_hidden(h) + tf.matmul(context, l_c) + embedded)
        np.testing.assert_allclose(attention[:, t].numpy(), alpha.numpy(), rtol=1e-5)
        np.testing.assert_allclose(logits[:, t].numpy(), layer.output_projection(out).numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_layer_config_round_trip():
    layer = SoftAttentionLSTM(9, embedding_dim=4, hidden_dim=6, attention_dim=5, dropout=0.3)
    clone = SoftAttentionLSTM.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_loss_masks_padding():
    loss = CaptionLoss()
    logits = tf.random.normal([1, 4, 9])
    a = loss.call(tf.constant([[4, 3, 0, 0]]), logits)
    b = loss.call(tf.constant([[4, 3]]), logits[:, :2])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


@pytest.mark.slow
def test_keras_file_round_trip_and_fit_step(model, tmp_path):
    frames, tokens, targets = _batch()
    inputs = {"frames": frames, "tokens": tokens}
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(model(inputs).numpy(), loaded(inputs).numpy(), atol=1e-6)
    assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(model.get_config(),
                                                                    sort_keys=True)
    loaded.compile(optimizer=keras.optimizers.Adam(1e-2), loss=CaptionLoss(0.1))
    before = loaded.decoder.output_projection.kernel.numpy().copy()
    history = loaded.fit(inputs, targets, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, loaded.decoder.output_projection.kernel.numpy())


def test_trainable_variables_per_stage(model):
    decoder = len(model.decoder.trainable_variables)
    model.encoder.set_trainable_blocks(0)  # pretrain
    assert len(model.trainable_variables) == decoder
    model.encoder.set_trainable_blocks(1)  # top block only
    top = len(model.trainable_variables) - decoder
    model.encoder.set_trainable_blocks(-1)  # finetune all
    everything = len(model.trainable_variables) - decoder
    assert 0 < top < everything == len(model.encoder.backbone.trainable_variables)
    model.encoder.set_trainable_blocks(0)


def test_cached_features_give_the_same_loss_as_frames(model):
    frames, tokens, targets = _batch()
    loss = CaptionLoss()
    through_encoder = loss(targets, model({"frames": frames, "tokens": tokens}))
    features = model.encode(frames).numpy()  # what the cache stores
    from_cache = loss(targets, model({"features": features, "tokens": tokens}))
    assert float(through_encoder) == pytest.approx(float(from_cache), rel=1e-6)


def test_greedy_equals_step_by_step_argmax(model):
    frames, _, _ = _batch()
    features = model.encode(frames)
    ids, scores, attention = generate(model, features, GreedySampler(), max_length=6)
    ids, attention = ids[:, 0], attention[:, 0]
    constants, state = model.decoder.initial_state(model.memory(features), 6)
    token = tf.fill([2], START_ID)
    manual = []
    for index in range(6):
        logits, state, _ = model.decoder.step(token, state, index, constants)
        token = tf.argmax(logits, -1, output_type=tf.int32)
        manual.append(token)
    manual = tf.stack(manual, 1).numpy()
    for row, expected in zip(ids.numpy(), manual):
        end = list(expected).index(END_ID) + 1 if END_ID in expected else len(expected)
        assert list(row[:end]) == list(expected[:end])
    assert attention.shape == (2, 6, 3)


def test_beam_search_scores_at_least_greedy(model):
    features = model.encode(_batch()[0])
    _, greedy, _ = generate(model, features, GreedySampler(0.0), max_length=6)
    _, beam, _ = generate(model, features, BeamSampler(4, 0.0), max_length=6)
    assert np.all(beam.numpy() >= greedy.numpy() - 1e-5)


def _offline(monkeypatch, encoder="inception_v3"):
    """The encoder's weights URL points at a closed local port: every
    download fails at once, as on a machine without internet access."""
    import dataclasses
    spec = encoder_lib.ENCODERS[encoder]
    monkeypatch.setitem(encoder_lib.ENCODERS, encoder,
                        dataclasses.replace(spec, weights_url="http://127.0.0.1:9/"))
    return spec


def test_imagenet_weights_download_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = _offline(monkeypatch)
    with pytest.raises(encoder_lib.EncoderWeightsError) as e:
        encoder_lib.resolve_weights("inception_v3", "imagenet")
    message = str(e.value)
    # the file, the URL it was fetched from, and the directory to put it in
    assert "\n" not in message and "cannot download the ImageNet weights" in message
    assert f"http://127.0.0.1:9/{spec.weights_file}" in message
    assert f"put it in {tmp_path}/models/" in message and spec.weights_file in message
    assert not (tmp_path / "models" / spec.weights_file).exists()  # no partial file left


def test_imagenet_weights_come_from_the_keras_cache(tmp_path, monkeypatch):
    """A file in `$KERAS_HOME/models` with the right hash is used without
    any download; one with another hash (a cut download) is fetched again
    (here: offline, so the error)."""
    import dataclasses
    import hashlib
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = _offline(monkeypatch)
    cached = tmp_path / "models" / spec.weights_file
    cached.parent.mkdir()
    cached.write_bytes(b"weights")
    offline = encoder_lib.ENCODERS["inception_v3"]
    monkeypatch.setitem(encoder_lib.ENCODERS, "inception_v3", dataclasses.replace(
        offline, weights_hash=hashlib.md5(b"weights").hexdigest()))
    assert encoder_lib.resolve_weights("inception_v3", "imagenet") == str(cached)
    monkeypatch.setitem(encoder_lib.ENCODERS, "inception_v3", offline)  # the real hash
    with pytest.raises(encoder_lib.EncoderWeightsError, match="cannot download"):
        encoder_lib.resolve_weights("inception_v3", "imagenet")


def test_imagenet_weights_are_fetched_as_keras_applications_fetches_them(monkeypatch):
    """The same `get_file` call (file, URL, cache subdirectory, hash) as
    `keras.applications` makes for the no-top weights."""
    from keras.src.utils import file_utils
    calls = []

    class Stop(Exception):
        pass

    def record(fname=None, origin=None, **kwargs):
        calls.append((fname, origin, kwargs.get("cache_subdir"), kwargs.get("file_hash")))
        raise Stop(origin)

    monkeypatch.setattr(file_utils, "get_file", record)
    monkeypatch.setattr(keras.utils, "get_file", record)
    for name in ("inception_v3", "inception_resnet_v2"):
        with pytest.raises(encoder_lib.EncoderWeightsError):
            encoder_lib.resolve_weights(name, "imagenet")
        with pytest.raises(Stop):
            encoder_lib.get_spec(name).constructor(include_top=False, weights="imagenet",
                                                   input_shape=(75, 75, 3))
        ours, theirs = calls[-2:]
        assert ours == theirs and ours[2] == "models" and len(ours[3]) == 32


def test_weights_file_is_used(tmp_path):
    backbone = keras.applications.InceptionV3(include_top=False, weights=None,
                                              input_shape=(75, 75, 3), pooling="avg")
    path = str(tmp_path / "w.weights.h5")
    backbone.save_weights(path)
    enc = encoder_lib.FrameEncoder("inception_v3", 75, encoder_weights=path)
    enc.build()
    np.testing.assert_array_equal(enc.backbone.weights[0].numpy(), backbone.weights[0].numpy())


def test_layers_pass_the_layer_test():
    """Config round trip, output shape, a training step and bfloat16 for each
    layer of the model (helpers.run_layer_test, as keras-hub tests layers)."""
    from etenet_tf.model import FrameEncoder, SpatioTemporalContext

    from helpers import run_layer_test
    run_layer_test(SoftAttentionLSTM, dict(vocabulary_size=9, embedding_dim=4, hidden_dim=6,
                                           attention_dim=5, dropout=0.0),
                   (tf.random.normal([2, 7, 10]), tf.constant([[2, 4, 5, 3], [2, 6, 3, 0]])),
                   expected_output_shape=(2, 4, 9))
    run_layer_test(SpatioTemporalContext, dict(num_frames=3, spatial_grid=2, temporal="gru",
                                               context_dim=8),
                   (tf.random.normal([2, 3, 2, 2, 5]),), expected_output_shape=(2, 12, 8))
    run_layer_test(SpatioTemporalContext, dict(num_frames=3, spatial_grid=2, temporal="delta",
                                               context_dim=8),
                   (tf.random.normal([2, 3, 2, 2, 5]),), expected_output_shape=(2, 12, 8))
    frames = np.random.default_rng(0).integers(0, 255, (1, 2, 75, 75, 3)).astype("uint8")
    run_layer_test(FrameEncoder, dict(encoder_name="inception_v3", image_size=75,
                                      spatial_grid=2, feature_layer="mixed2"),
                   (frames,), expected_output_shape=(1, 2, 2, 2, 288))


def test_small_cnn_encoder_is_a_backbone_like_the_others(tmp_path):
    """`small_cnn` (the tiny model's encoder): block cuts, a 2x2 grid, its
    own weights file through `--encoder_weights=PATH`, a refused ImageNet
    request and a refused foreign file, each in one line."""
    frames = np.random.default_rng(0).integers(0, 255, (1, 2, 75, 75, 3)).astype("uint8")
    encoder = encoder_lib.FrameEncoder("small_cnn", 75, 2, "block3")
    features = encoder(frames)
    assert tuple(features.shape) == (1, 2, 2, 2, 64)
    assert encoder_lib.feature_map_size("small_cnn", 75, "block3") == (10, 10, 64)
    encoder.set_trainable_blocks(1)  # the top block of the cut network: block3
    trainable = {w.path.split("/")[-2] for w in encoder.trainable_weights}
    assert trainable == {"block3_conv", "block3_bn"}
    from etenet_tf.model.small_cnn import SmallCNN
    network = SmallCNN(input_shape=(75, 75, 3))  # the whole network, as a file holds it
    path = str(tmp_path / "small.weights.h5")
    network.save_weights(path)
    loaded = encoder_lib.FrameEncoder("small_cnn", 75, 2, "block3", encoder_weights=path)
    again = encoder_lib.FrameEncoder("small_cnn", 75, 2, "block3", encoder_weights=path)
    np.testing.assert_allclose(loaded(frames), again(frames), atol=1e-6)
    np.testing.assert_array_equal(loaded.backbone.get_layer("block3_conv").kernel,
                                  network.get_layer("block3_conv").kernel)
    with pytest.raises(encoder_lib.EncoderWeightsError) as e:
        encoder_lib.resolve_weights("small_cnn", "imagenet")
    assert "\n" not in str(e.value) and "--encoder_weights=none" in str(e.value)
    with pytest.raises(UsageError) as built:  # built directly, as keras.applications are
        SmallCNN(weights="imagenet", input_shape=(75, 75, 3))
    assert str(built.value) == str(e.value)
    three = tmp_path / "three_blocks.weights.h5"  # another network's file
    SmallCNN(input_shape=(75, 75, 3), blocks=3).save_weights(str(three))
    with pytest.raises(encoder_lib.EncoderWeightsMismatchError) as e:
        encoder_lib.build_backbone("small_cnn", 75, "block2", str(three))
    assert "\n" not in str(e.value) and "do not fit small_cnn" in str(e.value)
    assert "imagenet" not in str(e.value)
