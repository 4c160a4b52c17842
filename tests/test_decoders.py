"""The decoder contract: every decoder of `DECODERS` passes the same tests
(config and .keras round trip, teacher forcing equals stepping through the
state, beam search equals brute force, a fit step, a clean-process export),
plus the Keras layer test of each decoder layer and the bad-input errors."""

import dataclasses
import itertools
import json
import os
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from etenet_tf.errors import UsageError
from etenet_tf.export import serving
from etenet_tf.generation import BeamSampler, CaptionGenerator, DecodingConfig
from etenet_tf.model.config import ModelConfig, build_captioner
from etenet_tf.model.decoders import DECODERS
from etenet_tf.model.losses import CaptionLoss
from etenet_tf.text.vocabulary import END_ID, PAD_ID, SPECIAL_TOKENS, START_ID

from helpers import error_lines, run_layer_test, run_main, run_without_package

VOCAB = list(SPECIAL_TOKENS) + ["a", "b"]  # 6 tokens: brute force stays small
SMALL = dict(image_size=75, num_frames=2, encoder="small_cnn", feature_layer="block3",
             embedding_dim=8, hidden_dim=8, attention_dim=8, num_layers=2, num_heads=2,
             feedforward_dim=16, dropout=0.0)


@pytest.fixture(scope="module", params=sorted(DECODERS))
def captioner(request):
    """`(name, model, features)`: a tiny captioner with this decoder and the
    features of two random clips."""
    keras.utils.set_random_seed(3)
    model = build_captioner(ModelConfig(decoder=request.param, **SMALL), VOCAB)
    frames = np.random.default_rng(0).integers(0, 256, (2, 2, 75, 75, 3)).astype("uint8")
    return request.param, model, model.encode(frames), frames


TOKENS = np.array([[START_ID, 4, 5, 4, END_ID], [START_ID, 5, END_ID, PAD_ID, PAD_ID]], "int32")


def test_config_and_keras_file_round_trip(captioner, tmp_path):
    name, model, features, _ = captioner
    config = ModelConfig(decoder=name, **SMALL)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    inputs = {"features": features, "tokens": TOKENS}
    clone = type(model.decoder).from_config(model.decoder.get_config())
    clone.build(model.memory(features).shape, (None, None))
    clone.set_weights(model.decoder.get_weights())
    memory = model.memory(features)
    np.testing.assert_allclose(clone(memory, TOKENS).numpy(),
                               model.decoder(memory, TOKENS).numpy(), atol=1e-6)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.decoder) is type(model.decoder)
    np.testing.assert_allclose(loaded(inputs).numpy(), model(inputs).numpy(), atol=1e-6)


def test_training_checkpoint_holds_every_decoder_weight(captioner, tmp_path):
    """Resume and best checkpoints are `tf.train.Checkpoint`s: restored into
    a fresh model of the same config, every decoder weight comes back (a
    Transformer whose blocks the checkpoint missed captioned nonsense after
    evaluate loaded it)."""
    name, model, features, _ = captioner
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(11)
    fresh = build_captioner(ModelConfig(decoder=name, **SMALL), VOCAB)
    tf.train.Checkpoint(model=fresh).restore(path).expect_partial()
    for want, got in zip(model.decoder.weights, fresh.decoder.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=want.path)
    inputs = {"features": features, "tokens": TOKENS}
    np.testing.assert_allclose(fresh(inputs).numpy(), model(inputs).numpy(), atol=1e-6)


def test_old_model_config_without_decoder_loads_as_sa_lstm():
    values = ModelConfig().to_dict()
    for field in ("decoder", "num_layers", "num_heads", "feedforward_dim", "tie_embeddings"):
        values.pop(field, None)
    assert ModelConfig.from_dict(values).decoder == "sa_lstm"


def test_teacher_forced_logits_equal_step_by_step_logits(captioner):
    name, model, features, _ = captioner
    memory = model.memory(features)
    forced, attention = model.decode(memory, TOKENS, return_attention=True)
    step_fn, state = model.start_decoding(features, 1, max_length=TOKENS.shape[1])
    stepped, weights = [], []
    for index in range(TOKENS.shape[1]):
        logits, state, alpha = step_fn(tf.constant(TOKENS[:, index]), state, tf.constant(index))
        stepped.append(logits)
        weights.append(alpha)
    real = TOKENS != PAD_ID  # padding follows <end>: its logits are never used
    np.testing.assert_allclose(tf.stack(stepped, 1).numpy()[real], forced.numpy()[real],
                               atol=1e-5)
    np.testing.assert_allclose(tf.stack(weights, 1).numpy()[real], attention.numpy()[real],
                               atol=1e-5)
    np.testing.assert_allclose(attention.numpy().sum(-1), 1.0, rtol=1e-5)


def _brute_force(model, features, max_length, alpha):
    """Best caption of each clip over every token sequence, scored by
    teacher-forced log-probabilities and the GNMT length penalty."""
    vocabulary = len(VOCAB)
    candidates = set()
    for seq in itertools.product(range(vocabulary), repeat=max_length):
        seq = list(seq)
        if END_ID in seq:
            seq = seq[:seq.index(END_ID) + 1]
        candidates.add(tuple(seq))
    candidates = sorted(candidates)
    tokens = np.array([[START_ID] + list(c) + [PAD_ID] * (max_length - len(c)) for c in candidates],
                      "int32")[:, :max_length]
    best = []
    memory = model.memory(features)
    for clip in range(features.shape[0]):
        clip_memory = tf.repeat(memory[clip:clip + 1], len(candidates), axis=0)
        log_p = tf.nn.log_softmax(model.decode(clip_memory, tokens)).numpy()
        scores = []
        for row, seq in enumerate(candidates):
            total = sum(log_p[row, t, token] for t, token in enumerate(seq))
            scores.append(total / ((5.0 + len(seq)) / 6.0) ** alpha)
        top = int(np.argmax(scores))
        best.append((list(candidates[top]), scores[top]))
    return best


def test_beam_search_equals_brute_force_search(captioner):
    """A beam as wide as every sequence prunes nothing: it must find the
    best caption that an exhaustive search finds."""
    name, model, features, _ = captioner
    max_length, alpha = 3, 0.6
    width = len(VOCAB) ** (max_length - 1)
    sampler = BeamSampler(width, alpha)
    step_fn, state = model.start_decoding(features, width, max_length)
    result = sampler(step_fn, state, 2, max_length=max_length)
    for clip, (seq, score) in enumerate(_brute_force(model, features, max_length, alpha)):
        ids = result.ids[clip, 0].numpy().tolist()
        assert ids[:len(seq)] == seq and all(t == PAD_ID for t in ids[len(seq):])
        assert float(result.scores[clip, 0]) == pytest.approx(score, abs=1e-5)


def test_one_fit_step_trains_every_decoder_weight(captioner):
    name, model, features, _ = captioner
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.compile(optimizer=keras.optimizers.Adam(1e-2), loss=CaptionLoss())
    targets = np.concatenate([TOKENS[:, 1:], np.zeros((2, 1), "int32")], 1)
    before = [w.numpy().copy() for w in clone.decoder.trainable_weights]
    history = clone.fit({"features": features, "tokens": TOKENS}, targets, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for old, new in zip(before, clone.decoder.trainable_weights):
        assert not np.allclose(old, new.numpy()), new.path


_CLEAN = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    out = loaded.signatures["serving_frames"](frames=tf.constant(np.load(sys.argv[2])))
    print(json.dumps({"captions": [c.decode() for c in out["captions"].numpy()],
                      "scores": out["scores"].numpy().tolist()}))
""")


@pytest.mark.slow
def test_export_in_a_clean_process_gives_the_caption_stage_captions(captioner, tmp_path):
    name, model, _, frames = captioner
    decoding = DecodingConfig(beam_size=2, max_decode_length=5)
    path = str(tmp_path / "export")
    serving.build_archive(model, decoding).write_out(path, verbose=False)
    np.save(tmp_path / "frames.npy", frames.astype("float32"))
    served = run_without_package(_CLEAN, path, tmp_path / "frames.npy", tmp_path=tmp_path)
    captions = CaptionGenerator(model, decoding.sampler(), decoding.max_decode_length)(frames)
    assert served["captions"] == [c.decode() for c in captions.texts[:, 0].numpy()]
    np.testing.assert_allclose(served["scores"], captions.scores[:, 0].numpy(), rtol=1e-4)


def test_decoder_layers_pass_the_layer_test():
    """Keras' harness (helpers.run_layer_test) on each decoder layer."""
    inputs = (tf.random.normal([2, 7, 10]), tf.constant([[2, 4, 5, 3], [2, 6, 3, 0]]))
    for name in sorted(DECODERS):
        layer = DECODERS[name].build(ModelConfig(decoder=name, **SMALL), 9)
        config = layer.get_config()
        kwargs = {k: v for k, v in config.items()
                  if k not in ("name", "trainable", "dtype")}
        run_layer_test(type(layer), kwargs, inputs, expected_output_shape=(2, 4, 9))


def test_head_count_must_divide_the_model_size():
    if "transformer" not in DECODERS:
        pytest.skip("no transformer decoder registered")
    with pytest.raises(UsageError, match="--num_heads=3 does not divide --embedding_dim=8"):
        dataclasses.replace(ModelConfig(decoder="transformer", **SMALL), num_heads=3).validate()


@pytest.mark.parametrize("args, needle", [
    (["--decoder=gru"], "--decoder=gru: value should be one of <sa_lstm|transformer>"),
    (["--decoder=transformer", "--embedding_dim=10", "--num_heads=4"],
     "--num_heads=4 does not divide --embedding_dim=10"),
])
def test_bad_decoder_flags_give_one_line_and_exit_2(args, needle, tmp_path):
    if "transformer" not in DECODERS and "transformer" in args[0]:
        pytest.skip("no transformer decoder registered")
    result = run_main("--stage=pretrain", f"--model_dir={tmp_path}/m",
                      f"--records_dir={tmp_path}/r", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = error_lines(result)
    assert len(lines) == 1 and needle in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "m")
