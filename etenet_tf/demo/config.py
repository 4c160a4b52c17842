"""Options of the browser demo: `DemoConfig`."""

import dataclasses

from etenet_tf.options import check, option


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Options of `--stage=demo`.

    Args:
        demo_host: the address the page is served on (127.0.0.1: this
            machine only).
        demo_port: its port.
        max_upload_mb: largest video a visitor may upload.
        max_video_seconds: longest video (its declared or demuxed duration).
        demo_queue_size: requests waiting at most (one runs at a time).
        demo_examples: a directory of example videos offered on the page
            ('': a few clips drawn by the shapes generator).
    """

    demo_host: str = option("127.0.0.1", "demo: address to serve the page on (0.0.0.0: every "
                            "interface; the default is this machine only).")
    demo_port: int = option(7860, "demo: port of the page (0: a free one).", low=0, high=65535)
    max_upload_mb: float = option(50.0, "demo: largest video upload, in MB.", low=0.0,
                                  low_open=True)
    max_video_seconds: float = option(600.0, "demo: longest video accepted, in seconds.",
                                      low=0.0, low_open=True)
    demo_queue_size: int = option(16, "demo: requests that may wait (one is captioned at a "
                                  "time); more get a 'busy' message.", low=1)
    demo_examples: str = option("", "demo: directory of example videos shown on the page ('': "
                                "clips drawn by the shapes generator).")

    def validate(self):
        check(self)
