"""The demo's web page (Gradio) on a `DemoEngine`.

One column takes the video (an upload or an example) and the decoding
choices; the other shows the n-best captions with their scores, the
frames lit where the model looked for the word picked among the best
caption's words, and every word's attention at once. "About this model"
says what the model is. Requests are queued and run one at a time
(`concurrency_limit=1`); a bad upload or choice is a message in the
page, and the next request works as before.

The endpoints (`api_name`) are what `gradio_client` calls:
`/caption(video, method, beam_size, num_captions, temperature, seed, top_k, top_p)` ->
`(message, captions table, word choice, heat map, all words, state)` and
`/word(word)` -> heat map (of the caller's last `/caption`). `<page>/?example=N` opens the page with
example N captioned (a link to share; the screenshot script uses it).
"""

import logging
import traceback

import gradio as gr

from etenet_tf.demo import engine as engine_lib
from etenet_tf.evaluation import attention_image

_log = logging.getLogger(__name__)
STATE_SECONDS = 1800  # a visitor's last result is kept this long
SESSIONS = 64  # visitors whose last result is kept (frames and attention, ~5 MB each)


def _word_choices(words):
    return [f"{i + 1}. {w}" for i, w in enumerate(words)]


def _word_index(choice):
    try:
        return int(str(choice).split(".", 1)[0]) - 1
    except ValueError:
        return 0


def caption_handler(engine):
    """The `/caption` function: its outputs, or a message and empty outputs."""

    def caption(video, method, beam_size, num_captions, temperature, seed, top_k, top_p):
        empty = (None, gr.update(choices=[], value=None), None, None, None)
        try:
            decoding = engine_lib.Decoding(
                method=method, beam_size=beam_size, num_captions=num_captions,
                temperature=temperature, seed=seed, top_k=top_k, top_p=top_p,
                length_penalty=engine.defaults.length_penalty,
                max_length=engine.defaults.max_length)
            result = engine.caption(video, decoding)
        except engine_lib.UploadError as e:
            return (f"**Cannot caption this:** {e}",) + empty
        except Exception as e:  # a bug: one line in the page, the trace in the server log
            _log.error("caption failed:\n%s", traceback.format_exc())
            return (f"**Internal error** ({type(e).__name__}); the server log has the "
                    "details. Try another video.",) + empty
        table = [[i + 1, text, round(score, 4)] for i, (text, score) in
                 enumerate(result.captions)]
        choices = _word_choices(result.words)
        overview = attention_image.attention_image(
            result.frames, result.words, result.attention.reshape(len(result.words), -1))
        heat = engine_lib.heat_map_image(result.frames, result.attention[0])
        state = {"frames": result.frames, "words": result.words,
                 "attention": result.attention}
        return (f"**{result.captions[0][0] or '(an empty caption)'}**  "
                f"({len(result.captions)} caption"
                f"{'s' if len(result.captions) > 1 else ''}, {method})", table,
                gr.update(choices=choices, value=choices[0]), heat, overview, state)

    return caption


def example_handler(engine, examples):
    """The page's load function: `?example=N` captions example N (from 1)."""
    caption = caption_handler(engine)

    def load(method, beam_size, num_captions, temperature, seed, top_k, top_p,
             request: gr.Request):
        number = (request.query_params.get("example") if request else None) or ""
        if not number.isdigit() or not 1 <= int(number) <= len(examples):
            return (gr.skip(),) * 7
        path = examples[int(number) - 1]
        return (path,) + caption(path, method, beam_size, num_captions, temperature, seed,
                                 top_k, top_p)

    return load


def word_handler(choice, state):
    """The `/word` function: the heat map of the picked word."""
    if not state or not choice:
        return None
    index = min(max(_word_index(choice), 0), len(state["words"]) - 1)
    return engine_lib.heat_map_image(state["frames"], state["attention"][index])


def build(engine, examples=(), queue_size=16):
    """The page (a `gr.Blocks`, queued: one request at a time)."""
    d = engine.defaults
    with gr.Blocks(title="EtENet video captioning") as page:
        gr.Markdown("# EtENet video captioning\nUpload a video or pick an example, then "
                    "**Caption**. Pick a word of the best caption to see where the model "
                    "looked for it.")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], height=260)
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[video],
                                label="Examples")
                method = gr.Radio(list(engine_lib.METHODS), value=d.method, label="Decoding",
                                  info="; ".join(f"{k}: {v.summary}" for k, v in
                                                 engine_lib.METHODS.items()))
                with gr.Row():
                    beam_size = gr.Slider(1, engine_lib.MAX_CAPTIONS, value=d.beam_size,
                                          step=1, label="Beam size")
                    num_captions = gr.Slider(1, engine_lib.MAX_CAPTIONS,
                                             value=d.num_captions, step=1,
                                             label="Captions")
                with gr.Row():
                    temperature = gr.Slider(0.05, 5.0, value=d.temperature, step=0.05,
                                            label="Temperature (drawn)")
                    seed = gr.Number(value=d.seed, precision=0, label="Seed (drawn)")
                with gr.Row():
                    top_k = gr.Slider(1, max(50, d.top_k), value=d.top_k, step=1,
                                      label="k (top_k)")
                    top_p = gr.Slider(min(0.05, d.top_p), 1.0, value=d.top_p, step=0.05,
                                      label="p (top_p)")
                button = gr.Button("Caption", variant="primary")
            with gr.Column(scale=2):
                message = gr.Markdown()
                captions = gr.Dataframe(headers=["#", "caption", "score"],
                                        datatype=["number", "str", "number"],
                                        label="Captions, best first", interactive=False)
                # a dropdown that takes any value: the choices change per visitor
                word = gr.Dropdown(choices=[], label="Word of the best caption",
                                   allow_custom_value=True)
                heat = gr.Image(label="Where the model looked for that word", type="numpy",
                                format="png", interactive=False)
                overview = gr.Image(label="Every word's attention (rows) over the frames",
                                    type="numpy", format="png", interactive=False)
        with gr.Accordion("About this model", open=True):
            gr.Markdown(engine.describe())
        state = gr.State(time_to_live=STATE_SECONDS)
        button.click(caption_handler(engine),
                     inputs=[video, method, beam_size, num_captions, temperature, seed, top_k,
                             top_p],
                     outputs=[message, captions, word, heat, overview, state],
                     api_name="caption", concurrency_limit=1)
        word.change(word_handler, inputs=[word, state], outputs=[heat], api_name="word")
        if examples:  # a link to an example: <page>/?example=1 captions the first on load
            page.load(example_handler(engine, examples), inputs=[method, beam_size,
                                                                 num_captions, temperature,
                                                                 seed, top_k, top_p],
                      outputs=[video, message, captions, word, heat, overview, state],
                      api_name=False)
    page.queue(default_concurrency_limit=1, max_size=queue_size)
    return page


def launch(page, *, host, port, max_upload_mb, examples=(), block=True):
    """Serves the page; returns it (with `block=False`, once it is up).

    Memory: uploads over `max_upload_mb` are refused by the server before
    they are stored, at most `SESSIONS` visitors' results are kept (each
    for `STATE_SECONDS`), and the queue holds `build`'s `queue_size`.
    """
    import os
    page.launch(server_name=host, server_port=port or None, share=False, inbrowser=False,
                max_file_size=f"{max_upload_mb:g}mb", prevent_thread_lock=not block,
                show_error=False, quiet=True, ssr_mode=False,
                state_session_capacity=SESSIONS,
                allowed_paths=sorted({os.path.dirname(os.path.abspath(p)) for p in examples}))
    return page
