"""Fit the shipped model's 2 Hz timeline and store it in the package's model file
(``src/merkit/assets/default_model.pt``): :func:`merkit.recipes.fit_timeline`.

    python bench/dynamic.py --write-test-ids feats/test_ids.txt --emopia feats/emopia --mirex feats/mirex_mood \\
        --emotify feats/emotify --q4 feats/q4
    merkit medleys --from feats/emopia,feats/mirex_mood,feats/emotify,feats/q4 -o feats/medleys -n 400 \\
        --seconds 60 --test-ids feats/test_ids.txt
    merkit extract-dynamic feats/medleys -o feats/medleys_dyn
    python bench/train_timeline.py --dyn feats/medleys_dyn --mirex feats/mirex_mood --emotify feats/emotify --q4 feats/q4

The medleys' test split is made of the shipped model's test clips only (``--test-ids``) and is
never read here; ``bench/dynamic.py`` scores it. The change detector is fitted on the training
medleys, its threshold, shortest part, easing and lag chosen on the validation medleys among
the settings whose curve holds still on single real clips: the validation parts (seed 0, the
shipped model's splits) of the MIREX-like set, Emotify and 4Q (the feature folders give their
clips and splits); 300 single songs of each training part are the detector's examples of music
that does not change. The
model's weights and calibration are not touched. Record:
``bench/results/timeline_model.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "timeline_model.json"


SONGS_PER_CORPUS = 300  # single songs of each training part shown to the detector as "no change"


def part_paths(folder: str, name: str, part: str, seed: int = 0, limit: int | None = None) -> list[str]:
    """The audio of a corpus's ``part`` ("train", "val"; the shipped model's splits of ``seed``),
    at most ``limit`` of them (a seeded sample)."""
    import numpy as np

    from merkit.data.memo2496 import load_memo2496
    from merkit.data.multi_corpus import corpus_from_features, corpus_splits

    c = corpus_from_features(load_memo2496(folder), ("musicnn",), name=name)
    idx = getattr(corpus_splits(c, seed), part)
    if limit is not None:
        idx = np.random.default_rng(seed).permutation(idx)[:limit]
    return [c.tracks[i].path for i in idx]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dyn", required=True, help="merkit extract-dynamic folder of the medleys")
    ap.add_argument("--model", help="model file to start from (default: the package's)")
    ap.add_argument("-o", "--out", help="model file to write (default: the package's)")
    for flag in ("--mirex", "--emotify", "--q4"):
        ap.add_argument(flag, metavar="DIR", help="feature folder whose validation clips the curve must hold still on")
    args = ap.parse_args(argv)
    import torch

    from merkit.config import DEFAULT_MODEL_FILE
    from merkit.outputs import write_json
    from merkit.recipes import fit_timeline

    torch.set_num_threads(1)
    folders = {name: folder for name, folder in (("mirex_mood", args.mirex), ("emotify", args.emotify), ("q4", args.q4))
               if folder}
    clips = {name: part_paths(folder, name, "val") for name, folder in folders.items()}
    songs = {name: part_paths(folder, name, "train", limit=SONGS_PER_CORPUS) for name, folder in folders.items()}
    rec = fit_timeline(args.model or DEFAULT_MODEL_FILE, args.dyn, args.out or DEFAULT_MODEL_FILE, clips=clips,
                       songs=songs)
    write_json(OUT_JSON, rec)
    print(json.dumps(rec["curve"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
