"""merkit: music emotion recognition (arousal, valence, quadrants) from audio.

>>> import merkit
>>> model = merkit.load_model()                 # the default model shipped with the package
>>> model.predict_file("song.mp3")              # Prediction(arousal=..., valence=..., quadrant=...)

The public names below are imported on first use, so ``import merkit`` stays fast (no torch).
"""
__version__ = "0.1.0"

_LAZY = {
    "load_model": "merkit.predict",
    "EmotionModel": "merkit.predictors.damer",
    "UnifiedModel": "merkit.predictors.unified",
    "get_encoder": "merkit.encoders",
    "Prediction": "merkit.results",
    "FileResult": "merkit.results",
    "plot_timeline": "merkit.plots",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'merkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
