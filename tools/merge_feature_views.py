"""One feature folder with the encoder views of two extractions of the same tracks.

    python tools/merge_feature_views.py feats/emotify+musicnn feats/emotify+musicnn_vgg \
        -o feats/emotify+musicnn+musicnn_vgg

Adding an encoder to a corpus otherwise means extracting everything again (decoding, Mel,
cochleagram and every encoder). This joins two Memo2496-layout folders made with the same front
end from the same tracks: it refuses unless their tracks.csv, Mel and cochleagram files are
byte-identical and their front-end settings agree, then links every file of the first folder and
the encoder views of the second into OUT (hard links where the file system allows, else copies)
and writes the union of both views into OUT/features.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

SHARED = ("tracks.csv", "mel_spec.npy", "cochlegram.npy")
FRONT_END = ("audio", "features", "geometry")


def _digest(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def merge(a: Path, b: Path, out: Path) -> list[str]:
    """Join ``b``'s encoder views onto ``a`` in ``out``; returns the views of ``out``."""
    ia = json.loads((a / "features.json").read_text())
    ib = json.loads((b / "features.json").read_text())
    for key in FRONT_END:
        if ia.get(key) != ib.get(key):
            raise SystemExit(f"{a} and {b}: different front-end settings ({key!r}); extract them alike")
    for name in SHARED:
        if _digest(a / name) != _digest(b / name):
            raise SystemExit(f"{a / name} and {b / name} differ: not the same tracks or not the same front end")
    new = [v for v in ib["views"] if v not in ia["views"]]
    if not new:
        raise SystemExit(f"{b} has no view that {a} lacks")
    if out.exists():
        raise SystemExit(f"{out} exists; remove it first")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(a, tmp, copy_function=lambda s, d: _link(Path(s), Path(d)))
    for v in new:
        for name in (f"{v}.npy", f"{v}_seq.npy"):
            _link(b / name, tmp / name)
    info = dict(ia, views=ia["views"] + new, encoders={**(ia.get("encoders") or {}), **(ib.get("encoders") or {})})
    info.pop("fingerprint", None)  # it described the first folder's views only
    (tmp / "features.json").unlink()
    (tmp / "features.json").write_text(json.dumps(info, indent=2))
    os.replace(tmp, out)
    return info["views"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="the folder whose files are kept")
    ap.add_argument("b", type=Path, help="the folder whose extra encoder views are added")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    views = merge(args.a, args.b, args.output)
    from merkit.data.memo2496 import load_memo2496  # the reader must accept the result

    fs = load_memo2496(args.output)
    print(f"{args.output}: {len(fs)} tracks, views {', '.join(views)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
