"""Size limits shared by the flags, the video decoder, the record reader
and the serving graph. Plain constants: importing this module imports
nothing else (the prepare workers must stay free of TensorFlow).
"""

# Most pixels a decoded frame may declare (`--max_frame_pixels`): 8192 x
# 8192. It admits every video frame size in use (8K UHD 7680x4320, DCI 8K
# 8192x4320) and 64-megapixel stills, and refuses a header that declares
# 13000x13000 (169 megapixels) before anything is decoded. A frame at the
# limit is 192 MiB as RGB.
MAX_FRAME_PIXELS = 8192 * 8192

# Most frames one serving request may hold over all its videos
# (`--max_serving_total_frames`): the encoder runs on all of them at once,
# so this bounds a request's memory. 256 = 4 videos of 64 frames or 32 of 8.
MAX_SERVING_TOTAL_FRAMES = 256

# Most frames per video in a serving request (`--max_serving_frames`).
MAX_SERVING_FRAMES = 64

# Most seconds one video may take to decode (`--decode_timeout_s`) in any
# decoding path (prepare, caption, Beam). Generous: a 2-hour 4K film
# decodes in a few minutes on one core; what exceeds it is stuck (a
# damaged file the decoder loops on, a network file system that hangs).
DECODE_TIMEOUT_S = 1800.0
