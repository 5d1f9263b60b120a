"""Is the shipped model's certainty a probability? Reliability of P(high arousal), P(positive
valence) and the quadrant's certainty on the held-out test parts it never trained on.

    python bench/calibration.py --emopia feats/emopia --mirex feats/mirex_mood --emotify feats/emotify --q4 feats/q4

Test parts: seed 0 of :func:`merkit.data.multi_corpus.corpus_splits`, the splits
``bench/train_default.py`` trained and calibrated the shipped model with (calibration used the
validation parts only). Truth: the sign of each clip's valence / arousal (EMOPIA and 4Q quadrants;
MIREX clusters by their circumplex angle, arousal only for clusters 1, 3, 5; Emotify's GEMS
heuristic); the true quadrant is the pair of signs. Writes ``bench/results/calibration.{json,md}``
and the reliability diagram ``calibration.png``: per bin of predicted probability, the share
that was right (a calibrated model lies on the diagonal); ECE is the bin-weighted mean gap.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CORPORA = ("emopia", "mirex_mood", "emotify", "q4")
BINS = np.linspace(0.0, 1.0, 11)


def reliability(p: np.ndarray, hit: np.ndarray, bins=BINS) -> dict:
    """Per bin of ``p``: count, mean p, share of hits; and the expected calibration error."""
    rows, ece = [], 0.0
    idx = np.clip(np.digitize(p, bins[1:-1]), 0, len(bins) - 2)
    for b in range(len(bins) - 1):
        m = idx == b
        if m.any():
            rows.append({"lo": float(bins[b]), "hi": float(bins[b + 1]), "n": int(m.sum()),
                         "mean_p": float(p[m].mean()), "hit_rate": float(hit[m].mean())})
            ece += m.sum() / len(p) * abs(p[m].mean() - hit[m].mean())
    return {"n": int(len(p)), "ece": float(ece), "mean_p": float(p.mean()), "accuracy": float(hit.mean()),
            "bins": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emopia", required=True)
    ap.add_argument("--mirex", required=True)
    ap.add_argument("--emotify", required=True)
    ap.add_argument("--q4", required=True, help="the 4Q dataset's feature folder (the shipped model trained on it too)")
    args = ap.parse_args(argv)

    import merkit
    from merkit.data.memo2496 import load_memo2496
    from merkit.data.mirex_mood import CONFIDENT_AROUSAL
    from merkit.data.multi_corpus import corpus_from_features, corpus_splits

    model = merkit.load_model()
    seed = int(model.info.get("seed", 0))
    paths = {"emopia": args.emopia, "mirex_mood": args.mirex, "emotify": args.emotify, "q4": args.q4}
    pv, pa, cert, tv, ta, conf_a = [], [], [], [], [], []
    for name in CORPORA:
        c = corpus_from_features(load_memo2496(paths[name]), tuple(model.net.cfg.inputs), name=name)
        te = corpus_splits(c, seed).test
        fields = model.predict_inputs(c.x[te])
        pv.append([f["valence"] for f in fields])
        pa.append([f["arousal"] for f in fields])
        cert.append([(f["certainty"], f["quadrant"]) for f in fields])
        tv.append(c.va[te, 0])
        ta.append(c.va[te, 1])
        conf_a.append(np.isin(c.mirex[te] + 1, CONFIDENT_AROUSAL) if name == "mirex_mood" else np.ones(len(te), bool))
    pv, pa, tv, ta = (np.concatenate(x).astype(float) for x in (pv, pa, tv, ta))
    conf_a = np.concatenate(conf_a)
    cq = np.array([x for part in cert for x in part], dtype=float)
    ok_v, ok_a = np.isfinite(tv) & (tv != 0), np.isfinite(ta) & (ta != 0) & conf_a
    true_q = np.where(ta > 0, np.where(tv > 0, 1, 2), np.where(tv > 0, 4, 3))
    ok_q = ok_v & ok_a
    out = {"model": repr(model), "seed": seed, "date": time.strftime("%Y-%m-%d"),
           "valence": reliability(pv[ok_v], (tv[ok_v] > 0).astype(float)),
           "arousal": reliability(pa[ok_a], (ta[ok_a] > 0).astype(float)),
           "quadrant certainty": reliability(cq[ok_q, 0], (cq[ok_q, 1] == true_q[ok_q]).astype(float))}
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "calibration.json.tmp"
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, RESULTS / "calibration.json")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, key in zip(axes, ("arousal", "valence", "quadrant certainty")):
        r = out[key]
        ax.plot([0, 1], [0, 1], color="#aaa", lw=1, ls="--")
        ax.plot([b["mean_p"] for b in r["bins"]], [b["hit_rate"] for b in r["bins"]], "o-", color="#36c")
        for b in r["bins"]:
            ax.annotate(str(b["n"]), (b["mean_p"], b["hit_rate"]), fontsize=7, xytext=(3, -9),
                        textcoords="offset points", color="#666")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability", title=f"{key} (ECE {r['ece']:.3f})")
    axes[0].set_ylabel("observed rate")
    fig.suptitle("Shipped model on the test parts (n per bin beside each point)", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "calibration.png", dpi=110)

    lines = ["# Calibration of the shipped model (`python bench/calibration.py`)", "",
             f"{out['date']}; test parts of seed {seed} (EMOPIA, MIREX-like, Emotify, 4Q together). "
             "ECE: expected calibration error over 10 bins. ![reliability diagram](calibration.png)", "",
             "| output | n | mean predicted probability | observed rate (high A / positive V / quadrant right) | ECE |", "|---|--:|--:|--:|--:|"]
    for key in ("arousal", "valence", "quadrant certainty"):
        r = out[key]
        lines.append(f"| {key} | {r['n']} | {r['mean_p']:.3f} | {r['accuracy']:.3f} | {r['ece']:.3f} |")
    lines += ["", "Quadrant certainty by bin:", "", "| certainty | n | share right |", "|---|--:|--:|"]
    for b in out["quadrant certainty"]["bins"]:
        lines.append(f"| {b['lo']:.1f}–{b['hi']:.1f} | {b['n']} | {b['hit_rate']:.3f} |")
    (RESULTS / "calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
