"""merkit: music emotion recognition (arousal, valence, quadrants) from audio."""
__version__ = "0.1.0"
