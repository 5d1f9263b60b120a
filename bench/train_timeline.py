"""Fit the shipped model's 2 Hz timeline and store it in the package's model file
(``src/merkit/assets/default_model.pt``): :func:`merkit.recipes.fit_timeline`.

    python bench/dynamic.py --write-test-ids feats/test_ids.txt --emopia feats/emopia --mirex feats/mirex_mood \\
        --emotify feats/emotify --q4 feats/q4
    merkit medleys --from feats/emopia,feats/mirex_mood,feats/emotify,feats/q4 -o feats/medleys -n 400 \\
        --seconds 60 --test-ids feats/test_ids.txt
    merkit extract-dynamic feats/medleys -o feats/medleys_dyn
    python bench/train_timeline.py --dyn feats/medleys_dyn

The medleys' test split is made of the shipped model's test clips only (``--test-ids``) and is
never read here; ``bench/dynamic.py`` scores it. The change detector is fitted on the training
medleys, its threshold, shortest part, easing and lag chosen on the validation medleys. The
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dyn", required=True, help="merkit extract-dynamic folder of the medleys")
    ap.add_argument("--model", help="model file to start from (default: the package's)")
    ap.add_argument("-o", "--out", help="model file to write (default: the package's)")
    args = ap.parse_args(argv)
    import torch

    from merkit.config import DEFAULT_MODEL_FILE
    from merkit.outputs import write_json
    from merkit.recipes import fit_timeline

    torch.set_num_threads(1)
    rec = fit_timeline(args.model or DEFAULT_MODEL_FILE, args.dyn, args.out or DEFAULT_MODEL_FILE)
    write_json(OUT_JSON, rec)
    print(json.dumps(rec["curve"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
