"""``merkit serve``: a local web page and JSON endpoint over :mod:`merkit.predict` (needs starlette,
uvicorn and python-multipart)."""

# 100 MB holds a 9-minute 16-bit stereo WAV at 44.1 kHz or hours of MP3: enough for songs, small
# enough that a stray upload cannot fill the disk or memory of a laptop.
DEFAULT_MAX_UPLOAD_MB = 100.0
# Longer audio is refused before decoding: the track result's cost is bounded anyway, but a page
# user should not wait on hours of timeline (which covers the first minutes only).
DEFAULT_MAX_MINUTES = 60.0
