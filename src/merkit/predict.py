"""The prediction pipeline: from file paths to results, down the layers once.

::
    merkit predict FILES ──find_inputs──> files ──load_model(kind)──> predictor
        predictor.analyse_files: decode → windows → loudness → views (merkit.frontend) → networks
        → merkit.results.Prediction / FileResult ──> table, CSV, JSON, plots (the command)

:func:`load_model` picks the predictor from a model file's ``kind`` (``unified``, ``dsaml``, or
DAMER-family checkpoints, one per task); :func:`load_onnx_model` runs the same predictor's
networks in onnxruntime.
"""
from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass
from typing import Iterable, Iterator

from .audio import AUDIO_EXTENSIONS, MIDI_EXTENSIONS
from .config import DEFAULT_MODEL_FILE
from .content import ContentCheck
from .predictors.base import Predictor, one_line_error
from .predictors.damer import EmotionModel
from .predictors.dynamic import DynamicModel
from .predictors.unified import UnifiedModel
from .results import FileResult
from .checkpoint import load_checkpoint
from .onnx_backend import _onnxruntime, read_sidecar
from .cluster import abspath, cached, connect, run_shards

# a model file's ``kind`` -> its predictor (DAMER-family checkpoints have none: EmotionModel)
PREDICTORS = {"unified": UnifiedModel, "dsaml": DynamicModel}
# Files `merkit predict FOLDER` picks up: the audio front end's formats and MIDI (rendered).
PREDICT_EXTENSIONS = tuple(sorted(set(AUDIO_EXTENSIONS) | set(MIDI_EXTENSIONS)))


@dataclass
class Scan:
    """What a folder scan found: the files to analyse, and everything else it saw, with why it
    is skipped (``(path, reason)``), so that nothing is left out in silence."""

    files: list[Path]
    skipped: list[tuple[Path, str]]

    def summary(self) -> str:
        """One line on what was skipped ("" when nothing was)."""
        if not self.skipped:
            return ""
        reasons: dict[str, int] = {}
        for _, why in self.skipped:
            reasons[why] = reasons.get(why, 0) + 1
        parts = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        return f"{len(self.skipped)} skipped: {parts} (e.g. {self.skipped[0][0]})"


def scan_inputs(paths: Iterable[str | os.PathLike]) -> Scan:
    """Files to predict: each file given as is (whatever its extension, so that a bad file gets
    an error entry), folders searched recursively for :data:`PREDICT_EXTENSIONS`, sorted.
    Symbolic links to folders are followed (an external drive linked into the library), each
    real folder once (a link loop ends there); a folder that cannot be listed and every file of
    another type is reported in :attr:`Scan.skipped`."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if not p.is_dir():
            files.append(p)  # a missing file becomes an error entry, not an abort
            continue
        seen: set[tuple[int, int]] = set()
        found = []

        def unlistable(err: OSError) -> None:
            skipped.append((Path(err.filename or p), f"folder(s) not readable ({err.strerror or err})"))

        for root, dirs, names in os.walk(p, onerror=unlistable, followlinks=True):
            st = os.stat(root)
            if (st.st_dev, st.st_ino) in seen:  # a link back to a folder already walked
                dirs[:] = []
                skipped.append((Path(root), "link(s) to a folder already scanned"))
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs.sort()
            for name in names:
                f = Path(root) / name
                if f.suffix.lower() in PREDICT_EXTENSIONS:
                    # a dangling symbolic link is listed too: it gets an error entry instead of vanishing
                    found.append(f)
                elif f.is_file() or f.is_symlink():
                    kind = f.suffix.lower() or "(no extension)"
                    skipped.append((f, f"not audio or MIDI ({kind})"))
        files += sorted(found)
    return Scan(files, skipped)


def find_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files of :func:`scan_inputs` (what it skipped is dropped: use that to report it)."""
    return scan_inputs(paths).files


def load_model(path: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> Predictor:
    """The shipped default model (``path=None``), or a model file: a unified-model file
    (:class:`~merkit.predictors.unified.UnifiedModel`: the shipped model, ``merkit train --arch
    unified`` runs), or DAMER checkpoints, one per task (:class:`EmotionModel`)."""
    if path is None:
        if not DEFAULT_MODEL_FILE.is_file():
            raise FileNotFoundError(f"{DEFAULT_MODEL_FILE}: the default model is missing from the "
                                    "installation; rebuild it with `python bench/train_default.py`")
        path = DEFAULT_MODEL_FILE
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    onnx = [p for p in paths if str(p).endswith(".onnx")]
    if onnx:
        raise ValueError(f"{onnx[0]}: an ONNX export; run it with `merkit predict --backend onnx` "
                         "(merkit.predict.load_onnx_model)")
    classical = [p for p in paths if str(p).endswith((".skops", ".pkl"))]
    if classical:
        raise ValueError(f"{classical[0]}: a classical (scikit-learn) model, which reads precomputed descriptors; "
                         "merkit predicts audio with networks: a `merkit train` best.pt (damer, musefuse, resnet, "
                         "shortchunk), a unified or a DSAML model file (`merkit evaluate` scores this one)")
    model = None
    if len(paths) == 1:
        try:
            blob = load_checkpoint(paths[0])  # every layout merkit wrote, as format 2
        except FileNotFoundError:
            raise FileNotFoundError(f"{paths[0]}: model file not found") from None
        if blob["kind"] in PREDICTORS:
            model = PREDICTORS[blob["kind"]].from_blob(blob, path=paths[0])
    if model is None:
        model = EmotionModel.from_files(paths)
    model.source_files = tuple(str(p) for p in paths)
    return model


def load_onnx_model(paths: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> "Predictor":
    """The predictor of ``merkit predict --backend onnx``: ``paths`` is one `merkit export` file
    (``model.onnx``; the torch model its sidecar names gives the front end and calibration), or
    torch model files as :func:`merkit.predict.load_model` takes them (None: the shipped model),
    run through their cached export (:func:`cached_export`)."""

    _onnxruntime()  # before any work
    paths = [] if paths is None else [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    exports = [p for p in paths if str(p).endswith(".onnx")]
    if not exports:
        return load_model(paths or None).use_onnx()
    if len(paths) > 1:
        raise ValueError("give one exported .onnx file, or torch model files (one per task)")
    path = Path(exports[0])
    source = read_sidecar(path).get("source", {})
    if not source:
        raise ValueError(f"{path} was exported from a model built in memory; load that model and call "
                         f"use_onnx({str(path)!r})")
    files = None if source.get("shipped") else source["files"]
    try:
        model = load_model(files)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: its torch model is gone ({e}); the ONNX backend takes the front end and "
                                "calibration from it: export again from the model file") from None
    return model.use_onnx(path)


# --- on a dask.distributed cluster (merkit.cluster) ----------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to rebuild the model of ``merkit predict``: its file(s) (None: the
    shipped model, inside the package) and the settings the command changes after loading."""

    paths: tuple[str, ...] | None = None
    timeline_max_seconds: float | None = None
    content_check: ContentCheck | None = None
    timeline_mode: str | None = None

    def load(self):
        model = load_model(list(self.paths) if self.paths else None)
        if self.timeline_max_seconds is not None:
            model.timeline_max_seconds = self.timeline_max_seconds
        if self.content_check is not None:
            model.content_check = self.content_check
        if self.timeline_mode is not None and hasattr(model, "timeline_mode"):
            model.timeline_mode = self.timeline_mode
        return model


def _predict_shard(items: list[tuple[str, str]], spec: ModelSpec, timeline: bool) -> list[FileResult]:
    model = cached(("predict", spec), spec.load)
    out = []
    for shown, path in items:
        try:  # the local command's own per-file code, one file at a time
            res = next(iter(model.analyse_files([path], timeline=timeline, workers=1)))
        except Exception as e:  # still one file's problem, never the shard's
            res = FileResult(path, error=one_line_error(e, path))
        res.path = shown  # the path as the user gave it, as the local command reports it
        out.append(res)
    return out


def analyse_files_on_cluster(spec: ModelSpec, paths, *, timeline: bool = False, cluster,
                  shard_size: int | None = None) -> Iterator[FileResult]:
    """:meth:`merkit.predictors.base.Predictor.analyse_files` on a cluster: shards of files go to the
    workers, each of which loads the model of ``spec`` once; results come in input order and a
    file that fails (or kills its worker) is one error result."""

    items = [(str(p), abspath(str(p))) for p in paths]
    if not items:
        return
    with connect(cluster) as client:
        for shard, results in run_shards(client, _predict_shard, items, spec, timeline,
                                         shard_size=shard_size, ordered=True):
            if results is None:
                (shown, _), = shard
                yield FileResult(shown, error=f"{shown}: worker process crashed on this file")
                continue
            yield from results

__all__ = ["PREDICTORS", "PREDICT_EXTENSIONS", "ModelSpec", "Scan", "analyse_files_on_cluster", "find_inputs",
           "scan_inputs", "load_model",
           "load_onnx_model"]
