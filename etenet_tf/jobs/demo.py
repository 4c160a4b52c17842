"""`--stage=demo`: a local web page to try the model (`etenet_tf.demo`).

The model comes from `--model` (a package or `hf://owner/name`) or the
`--checkpoint` stage of `--model_dir`; the page is served on
`--demo_host:--demo_port` (127.0.0.1 unless told otherwise) until Ctrl-C
or SIGTERM. Needs the `demo` extra (Gradio).
"""

import os
import sys
import tempfile
import time

from etenet_tf.errors import UsageError
from etenet_tf.export import package
from etenet_tf.jobs.registry import checkpoint_stages
from etenet_tf.run_dir import RunDir

INSTALL = 'pip install -e ".[demo]"'


def require_gradio():
    """Raises `UsageError` naming the extra when Gradio is not installed."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError(f"--stage=demo needs Gradio, the demo extra: {INSTALL}") from None


def make_engine(config):
    """The `DemoEngine` of a config (the model loaded)."""
    from etenet_tf.demo import engine
    model_dir = package.model_directory(config)
    stage = checkpoint_stages(config.evaluation.checkpoint, RunDir(model_dir))[-1]
    decoding = config.decoding
    defaults = engine.Decoding(
        method={"random": "sample"}.get(decoding.sampling, decoding.sampling),
        beam_size=min(decoding.beam_size, engine.MAX_CAPTIONS),
        num_captions=min(decoding.num_captions, decoding.beam_size, engine.MAX_CAPTIONS),
        length_penalty=decoding.length_penalty, max_length=decoding.max_decode_length,
        temperature=decoding.temperature, seed=decoding.sampling_seed,
        top_k=min(decoding.top_k, engine.MAX_TOP_K), top_p=decoding.top_p)
    return engine.DemoEngine(
        model_dir, stage, records_dir=config.data.records_dir, defaults=defaults,
        demo_limits=engine.Limits(max_upload_mb=config.demo.max_upload_mb,
                                  max_frame_pixels=config.data.max_frame_pixels,
                                  max_video_seconds=config.demo.max_video_seconds))


def examples(config):
    """The example videos of `--demo_examples` (or drawn shapes clips)."""
    from etenet_tf.demo import engine as engine_lib
    cache = os.path.join(tempfile.gettempdir(), "etenet-demo-examples")
    return engine_lib.example_videos(config.demo.demo_examples, cache)


def run(config, block=True):
    """Serves the demo; returns the page (`block=False`: once it is up)."""
    config.demo.validate()
    config.decoding.validate()
    config.source.validate()
    require_gradio()
    from etenet_tf.demo import app
    start = time.monotonic()
    engine = make_engine(config)
    engine.warm_up()
    loaded = time.monotonic()
    shown = examples(config)
    page = app.build(engine, shown, queue_size=config.demo.demo_queue_size)
    app.launch(page, host=config.demo.demo_host, port=config.demo.demo_port,
               max_upload_mb=config.demo.max_upload_mb, examples=shown, block=False)
    print(f"demo: model loaded in {loaded - start:.1f}s, page up {time.monotonic() - loaded:.1f}s "
          f"later at {page.local_url} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    if block:
        try:
            while True:
                time.sleep(0.5)
        finally:
            page.close()
    return page
