"""`--stage=demo`: a local web page to try a trained model (Gradio).

`engine` is the part without Gradio (checking an upload, captioning it with
the chosen decoding, the attention of each word, what the model is);
`app` builds the page on it. Gradio is the optional `demo` extra: only
`app` imports it.
"""

from etenet_tf import exports

__all__, __getattr__, __dir__ = exports.package(__name__)
