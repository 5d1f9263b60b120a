"""merkit adapt --examples mine.csv -o my_model.pt [--model M]: the model, adapted to one listener.

``mine.csv`` lists a few of the listener's own tracks: ``path, valence, arousal`` (each in
[-1, 1], 0 = neutral) or ``path, quadrant`` (1-4). The unified model's valence/arousal head
(its last layer only) is fine-tuned on them, with an L2 pull towards the shipped weights so that
a handful of examples moves the model without overwriting it; the trunk, the calibration and the
other heads are kept. The result is a normal model file (``merkit predict --model my_model.pt``)
that records what it was adapted on. Refused: fewer than ``MIN_EXAMPLES`` usable tracks, a track
listed twice with different labels, labels out of range. Measured on Emotify listener groups (bench/personal.py),
few-shot adaptation of this kind did not beat the population model; docs/adapt.md says so.
"""
from __future__ import annotations

from . import COMMANDS
from ._args import add_old_spelling

import csv
import sys
from pathlib import Path
from ..data.manifest import check_utf8
from ..outputs import check_file

MIN_EXAMPLES = 3
STEPS = 200
LR = 1e-2
PULL = 1.0  # weight of the L2 distance to the original head, per parameter (mean squared)
QUADRANT_VA = {1: (0.5, 0.5), 2: (-0.5, 0.5), 3: (-0.5, -0.5), 4: (0.5, -0.5)}


def register(sub) -> None:
    p = sub.add_parser("adapt", help=COMMANDS['adapt'],
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="unified model file (default: the shipped model)")
    p.add_argument("--examples", required=True, help="CSV: path, valence, arousal (or path, quadrant)")
    p.add_argument("-o", "--output", required=True, help="the adapted model file")
    add_old_spelling(p, "--out", "output")
    p.add_argument("--force", action="store_true",
                   help="let -o replace another kind of merkit output (never anything merkit did not write)")
    p.set_defaults(func=run)


def read_examples(path: str) -> list[tuple[str, float, float]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    check_utf8(p)
    out: dict[str, tuple[float, float]] = {}
    with open(p, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "path" not in cols or not ({"valence", "arousal"} <= set(cols) or "quadrant" in cols):
            raise ValueError(f"{path}: needs the columns path, valence, arousal (or path, quadrant); has {cols}")
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            track = row["path"]
            if not track:
                continue
            try:
                if row.get("valence") not in (None, "") and row.get("arousal") not in (None, ""):
                    va = (float(row["valence"]), float(row["arousal"]))
                else:
                    va = QUADRANT_VA[int(row["quadrant"])]
            except (KeyError, ValueError):
                raise ValueError(f"{path}:{line}: bad label (valence/arousal in [-1, 1], or quadrant 1-4)") from None
            if not all(-1.0 <= x <= 1.0 for x in va):
                raise ValueError(f"{path}:{line}: valence and arousal must be in [-1, 1], got {va}")
            resolved = str((p.parent / track).resolve()) if not Path(track).is_absolute() else track
            if resolved in out and out[resolved] != va:
                raise ValueError(f"{path}:{line}: {track} is listed twice with different labels "
                                 f"({out[resolved]} and {va}): contradictory examples")
            out[resolved] = va
    return [(k, v, a) for k, (v, a) in out.items()]


def run(args) -> int:
    import numpy as np
    import torch

    from ..predict import load_model
    from ..predictors.unified import UnifiedModel

    examples = read_examples(args.examples)
    inputs = [args.examples, *([args.model] if args.model else []), *(e[0] for e in examples)]
    check_file(args.output, flag="-o", kind="model", inputs=inputs, force=args.force)
    model = load_model(args.model)
    if not isinstance(model, UnifiedModel):
        raise ValueError("merkit adapt works on unified model files (the shipped model, `merkit train --arch unified`)")
    xs, ys, used = [], [], []
    for path, v, a in examples:
        try:
            feats = model._file_features(path, timeline=False)
        except (ValueError, OSError, RuntimeError) as e:
            print(f"merkit adapt: skipped {e}", file=sys.stderr)
            continue
        if feats["content"][0]:  # silence, a tone, noise: no emotion to learn from
            print(f"merkit adapt: skipped {path}: not music: {feats['content'][0]}", file=sys.stderr)
            continue
        xs.append(feats["x"][0])
        ys.append((v, a))
        used.append(path)
    if len(xs) < MIN_EXAMPLES:
        raise ValueError(f"{len(xs)} usable example(s); merkit adapt needs at least {MIN_EXAMPLES}")
    y = np.array(ys)
    # targets in the head's score space: valence_score = tanh(s - s_half)
    centre = np.array(model.score_centres())
    target = torch.from_numpy((np.arctanh(np.clip(y, -0.95, 0.95)) + centre).astype(np.float32))
    net = model.net
    head = net.heads["va"]
    w0 = [p.detach().clone() for p in head.parameters()]
    with torch.no_grad():
        z = net.embed(torch.from_numpy(np.stack(xs).astype(np.float32)))
    before = head(z).detach()
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        fit = ((head(z) - target) ** 2).mean()
        pull = sum(((p - q) ** 2).mean() for p, q in zip(head.parameters(), w0))
        (fit + PULL * pull).backward()
        opt.step()
    with torch.no_grad():
        after = head(z)
    err = lambda s: float(torch.sqrt(((torch.tanh(s - torch.from_numpy(centre.astype(np.float32))) - torch.from_numpy(y.astype(np.float32))) ** 2).mean()))
    model.info = {**model.info, "adapted": {"examples": len(xs), "from": str(args.model or "shipped model"),
                                            "steps": STEPS, "lr": LR, "pull": PULL, "tracks": [Path(u).name for u in used],
                                            "rmse_before": err(before), "rmse_after": err(after)}}
    model.reference = model.reference_probabilities()
    model.save(args.output)
    print(f"adapted on {len(xs)} tracks: RMSE on them {err(before):.3f} -> {err(after):.3f}; wrote {args.output}")
    return 0
