"""One runner for merkit's benchmarks: what each needs, whether this machine has it, and every
result stamped with where and from what it came.

    python bench/run.py                       # the list: each benchmark, its prerequisites, met or not
    python bench/run.py predict               # check predict's prerequisites, run bench/predict.py
    python bench/run.py unified -- --seeds 0  # arguments after -- go to the script

A run checks the benchmark's prerequisites first and stops with one line naming what is missing
(and the command that makes it) instead of failing half-way. When the script finishes, every
result JSON it wrote under ``bench/results/`` gets a ``"provenance"`` entry: date, machine
(processor, cores, memory, whether a GPU was used), Python and library versions, and the git
commit of the checkout (with ``+dirty`` when it had uncommitted changes), so each committed number
says how to reproduce it. No benchmark writes README.md (bench/emopia.py updates its tables in
bench/README.md).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = Path(os.environ.get("MERKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Need:
    """One prerequisite: what it is, how to check it, and what makes it."""

    what: str
    check: Callable[[], bool]
    make: str = ""
    # a soft need is only a default: the script makes it itself on first use, or takes it as an
    # argument, so the runner notes it and goes on
    soft: bool = False


def _features(name: str, *views: str) -> Need:
    def check() -> bool:
        from merkit.data.memo2496 import is_memo2496_dir
        from merkit.feature_cache import dataset_features_dir

        return is_memo2496_dir(dataset_features_dir(name, views or None))
    extra = f" --views mel,coch,{','.join(views)}" if views else ""
    return Need(f"{name} features{' with ' + ', '.join(views) if views else ''} in merkit's cache", check,
                f"the script extracts them on first use (EMOPIA: ~30 min), or run "
                f"merkit extract {name} -o DIR{extra} and pass DIR to the script", soft=True)


SHARED_DATA = Need("the shared data (../shared/data or $MERKIT_SHARED_DATA)", lambda: SHARED.is_dir(),
                   "set MERKIT_SHARED_DATA to the folder with emopia/, emotify/, mirex_mood/")
FLUIDSYNTH = Need("FluidSynth and a General MIDI soundfont", lambda: shutil.which("fluidsynth") is not None,
                  "./install.sh (apt: fluidsynth fluid-soundfont-gm)")
ONNX = Need("onnx and onnxruntime", lambda: _has("onnxruntime") and _has("onnx"), "pip install 'merkit[onnx]'")
DASK = Need("dask.distributed", lambda: _has("distributed"), "pip install 'merkit[dask]'")
LIBROSA = Need("librosa (the decode-only reference)", lambda: _has("librosa"), "pip install librosa")
VIBENET = Need("a vibenet venv (GPL; benchmark only)", lambda: Path(os.environ.get("VIBENET_PYTHON", "/tmp/vib/bin/python")).is_file(),
               "python3 -m venv /tmp/vib && /tmp/vib/bin/pip install vibenet==0.1.0 (or set $VIBENET_PYTHON)")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@dataclass(frozen=True)
class Bench:
    script: str
    what: str
    needs: tuple[Need, ...] = field(default_factory=tuple)


BENCHMARKS = {
    "predict": Bench("predict.py", "speed of merkit predict (track, timeline, folder; torch and ONNX)", (LIBROSA, ONNX)),
    "features": Bench("features.py", "feature speed per stage, one core"),
    "reliability": Bench("reliability.py", "bad input through the CLI: promises kept, peak memory", ()),
    "content_check": Bench("content_check.py", "the not-music check: false alarms on real clips by length, speech, sweeps",
                           (SHARED_DATA, Need("espeak-ng (speech for the generated cases)",
                                              lambda: shutil.which("espeak-ng") is not None,
                                              "./install.sh (apt: espeak-ng)", soft=True))),
    "train_speed": Bench("train_speed.py", "DAMER epoch time (CPU; --device cuda where lent a GPU)"),
    "cpu_kernels": Bench("cpu_kernels.py", "the CPU kernels behind DAMER's training step"),
    "compile_layer": Bench("compile_layer.py", "torch.compile on one DAMER layer"),
    "extract_scale": Bench("extract_scale.py", "extraction throughput and memory at scale (local, --cluster)", (DASK,)),
    "unified": Bench("unified.py", "the unified model across corpora, a probe, the SVM, DAMER, vibenet",
                     (_features("emopia", "musicnn"), _features("mirex_mood", "musicnn"),
                      _features("emotify", "musicnn", "musicnn_mtt"), _features("q4", "musicnn", "musicnn_mtt"))),
    "unified_loco": Bench("unified_loco.py", "the unified recipe chosen by leave-one-corpus-out validation",
                          (_features("emopia", "musicnn"), _features("mirex_mood", "musicnn"),
                           _features("emotify", "musicnn", "musicnn_mtt"), _features("q4", "musicnn", "musicnn_mtt"))),
    "unified_grid": Bench("unified_grid.py", "the unified model's capacity grid (validation only)",
                          (_features("emopia", "musicnn"), _features("mirex_mood", "musicnn"),
                           _features("emotify", "musicnn"))),
    "train_default": Bench("train_default.py", "retrain the shipped model (writes src/merkit/assets/default_model.pt)",
                           (_features("emopia", "musicnn"), _features("mirex_mood", "musicnn"),
                            _features("emotify", "musicnn"), _features("q4", "musicnn"))),
    "hear_once": Bench("hear_once.py", "the shipped model with musicnn hearing a short clip once: test metrics "
                                       "(rewrites src/merkit/assets/default_model.pt)",
                       (_features("emopia", "musicnn"), _features("mirex_mood", "musicnn"),
                        _features("emotify", "musicnn"), _features("q4", "musicnn"))),
    "emopia": Bench("emopia.py", "DAMER and baselines on EMOPIA renders (official and protocol splits)",
                    (_features("emopia"), FLUIDSYNTH)),
    "regression_emotify": Bench("regression_emotify.py", "regression on Emotify's listener ratings", (_features("emotify"),)),
    "calibration": Bench("calibration.py", "calibration of the shipped model on its four test parts",
                         (_features("emopia", "musicnn"), _features("mirex_mood", "musicnn"),
                          _features("emotify", "musicnn"), _features("q4", "musicnn"))),
    "timeline_steadiness": Bench("timeline_steadiness.py", "the shipped timeline on single real clips: steadiness, agreement",
                                 (_features("mirex_mood", "musicnn"), _features("emotify", "musicnn"),
                                  _features("q4", "musicnn"))),
    "train_timeline": Bench("train_timeline.py", "fit the shipped 2 Hz timeline on medleys (writes "
                                                 "src/merkit/assets/default_model.pt)",
                            (_features("mirex_mood", "musicnn"), _features("emotify", "musicnn"),
                             _features("q4", "musicnn"))),
    "dynamic": Bench("dynamic.py", "the shipped 2 Hz timeline, DSAML and the sliding windows on held-out medleys",
                     (SHARED_DATA,)),
    "dynamic_grid": Bench("dynamic_grid.py", "DSAML defaults chosen on validation medleys", (SHARED_DATA,)),
    "personal": Bench("personal.py", "personalisation on Emotify listener groups", (_features("emotify", "musicnn"),)),
    "encoder_precision": Bench("encoder_precision.py", "musicnn in bfloat16 and int8 against float32: speed, "
                                                       "embedding change", (SHARED_DATA, ONNX)),
    "library": Bench("library.py", "merkit predict on a folder against vibenet (clips/s, peak RSS), the decode "
                                   "floor, an unchanged rerun", (SHARED_DATA, VIBENET, ONNX)),
    "vibenet": Bench("vibenet_peer.py", "the outside peer vibenet on the same clips (run inside its venv)", (VIBENET,)),
}


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> dict:
    """Where and from what a result comes: date, machine, versions, commit."""
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "git_commit": _git_commit(),
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "system": platform.platform()},
            "versions": {"python": platform.python_version(),
                         **{p: version(p) for p in ("merkit", "torch", "numpy", "scipy", "scikit-learn",
                                                     "soundfile", "onnxruntime")}}}


def stamp(paths: list[Path], record: dict) -> list[Path]:
    """Add ``record`` as ``"provenance"`` to each JSON object in ``paths``; the files stamped."""
    from merkit.outputs import write_json

    done = []
    for p in paths:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            data["provenance"] = record
            write_json(p, data)
            done.append(p)
    return done


def listing() -> str:
    lines = []
    for name, b in BENCHMARKS.items():
        lines.append(f"{name:<19} {b.what}  (bench/{b.script})")
        for n in b.needs:
            state = "ok     " if n.check() else "not yet" if n.soft else "MISSING"
            lines.append(f"{'':<21}{state} {n.what}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="the benchmark to run (none: the list)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="after --: the script's own arguments")
    a = ap.parse_args(argv)
    if a.name is None:
        print(listing())
        return 0
    bench = BENCHMARKS[a.name]
    missing = [n for n in bench.needs if not n.check()]
    for n in missing:
        print(f"bench {a.name}: {'note' if n.soft else 'missing'}: {n.what}: {n.make}", file=sys.stderr)
    if any(not n.soft for n in missing):
        return 2
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    started = time.time()
    rc = subprocess.call([sys.executable, str(ROOT / "bench" / bench.script), *args], cwd=ROOT)
    written = [p for p in RESULTS.glob("*.json") if p.stat().st_mtime >= started - 1]
    stamped = stamp(written, provenance())
    if stamped:
        print(f"bench {a.name}: provenance added to {', '.join(str(p.relative_to(ROOT)) for p in stamped)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
