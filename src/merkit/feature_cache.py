"""Features of a named dataset, extracted once into merkit's cache: ``merkit train --data emopia``.

The folder is ``<cache>/feats/<name>`` (``$MERKIT_CACHE``, else ``~/.cache/merkit``) with the
paper preset; the first use runs :func:`merkit.extract.extract` (resumable, so an interrupted
first use continues), later uses load it directly.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .data.paths import cache_dir
from .config import PRESETS
from .data.registry import resolve_input

log = logging.getLogger(__name__)

# Datasets that name a corpus whose audio merkit can reach without further options.
NAMED = ("emopia", "emotify", "mirex_mood", "q4", "synthetic")


def dataset_features_dir(name: str, views=None) -> Path:
    """``<cache>/feats/<name>``, or ``<cache>/feats/<name>+<encoder>...@once`` with encoder
    views (``@once``: the encoders heard short clips once, :attr:`AudioConfig.encoder_once`; the
    folders without it, from before, hold the looped window's embeddings and are not reused)."""
    from .frontend import SPECTRAL_VIEWS, parse_views

    extra = [v for v in parse_views(views) if v not in SPECTRAL_VIEWS]
    once = "@once" if extra and PRESETS["paper"].audio.encoder_once else ""
    return cache_dir("feats") / ("+".join([name, *extra]) + once)


def dataset_features(name: str, folder: str | os.PathLike | None = None, *, workers: int | None = None,
                     progress: bool = True, views=None) -> Path:
    """The Memo2496-layout feature folder of dataset ``name`` (``folder``, by default
    :func:`dataset_features_dir`), extracting it there on first use; ``views`` adds encoder
    views (:func:`merkit.frontend.parse_views`)."""
    from .extract import extract
    from .data.memo2496 import is_memo2496_dir

    if name not in NAMED:
        raise ValueError(f"{name}: no cached features for this name; extract them with "
                         f"`merkit extract {name} -o DIR` (with --audio-dir where needed) and pass DIR")
    folder = Path(folder) if folder is not None else dataset_features_dir(name, views)
    if is_memo2496_dir(folder):
        return folder
    log.info("%s: extracting features into %s once (EMOPIA renders its MIDI first: ~30 min on 2 cores)",
             name, folder)
    preset = PRESETS["paper"]
    report = extract(resolve_input(name, workers=workers, progress=progress), folder, audio=preset.audio,
                     features=preset.features, workers=workers, progress=progress, views=views)
    if report.failures:
        log.warning("%s: %d track(s) failed and are left out (see %s)", name, len(report.failures),
                    folder / "failures.csv")
    return folder


def load_features(spec: str, views=None):
    """The FeatureSet named by ``--data``: a Memo2496-layout folder (``merkit extract`` output or
    the official download), or a dataset name (``emopia``, ``emotify``, ``mirex_mood``,
    ``synthetic``) whose features (with ``views``) are extracted into merkit's cache on first use."""
    from .data.memo2496 import is_memo2496_dir, load_memo2496

    path = Path(spec)
    if is_memo2496_dir(path):
        return load_memo2496(path)
    if path.exists():
        raise ValueError(f"{path}: not a Memo2496-layout folder (needs mel_spec.npy and cochlegram.npy; "
                         "make one with `merkit extract`)")
    if spec in NAMED:
        return load_memo2496(dataset_features(spec, views=views))
    raise ValueError(f"{spec}: no such folder, and not one of the dataset names {', '.join(NAMED)} "
                     "(other corpora: `merkit extract NAME -o DIR`, then --data DIR)")


def load_corpus(spec: str, inputs: tuple[str, ...]):
    """The :class:`~merkit.data.multi_corpus.Corpus` of ``--data`` entry ``spec`` for a unified
    model taking ``inputs`` (encoder views and/or ``tonal``): its feature folder (or cached
    dataset) with those views, refused in one line when a view is missing."""
    from .data.multi_corpus import corpus_from_features

    views = ("mel", "coch", *(n for n in inputs if n != "tonal"))
    fs = load_features(spec, views=views)
    missing = [n for n in views[2:] if n not in fs.embeddings]
    if missing:
        raise ValueError(f"{spec}: no {missing[0]!r} view; extract it with `merkit extract ... --views {','.join(views)}`")
    return corpus_from_features(fs, inputs)
