"""Scores of vibenet (an outside peer, GPL, never a merkit dependency) on the clips of feature
folders, for bench/unified.py. Run it in its own environment:

    python3 -m venv /tmp/vib && /tmp/vib/bin/pip install vibenet==0.1.0
    /tmp/vib/bin/python bench/vibenet_peer.py feats/emopia feats/mirex_mood feats/emotify

It reads each folder's tracks.csv, runs vibenet on every track's audio file (its whole clip, as
vibenet's own CLI does) and writes bench/results/vibenet_scores.csv (source, track_id, path, ok, energy, valence,
error; with each track's source and id, which is how bench/unified.py matches them). Resumable: paths already scored are skipped. A file vibenet cannot read is a row with
ok = 0 and the error; the run goes on.
"""
import csv
import os
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "vibenet_scores.csv"


def main(folders):
    import vibenet

    paths, ids = [], {}
    for f in folders:
        with open(Path(f) / "tracks.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r["path"]:
                    paths.append(r["path"])
                    ids[r["path"]] = (r["source"], r["track_id"])
    done = {}
    if OUT.is_file():
        with open(OUT, newline="") as fh:
            done = {r["path"]: r for r in csv.DictReader(fh)}
    model = vibenet.load_model()
    todo = [p for p in paths if p not in done]
    for p, row in done.items():  # rows of an older file: add the ids
        if p in ids:
            row["source"], row["track_id"] = ids[p]
    t0 = time.perf_counter()
    for k, p in enumerate(todo, 1):
        try:
            r = model.predict(p)[0]
            done[p] = {"path": p, "ok": "1", "energy": f"{r.energy:.6f}", "valence": f"{r.valence:.6f}", "error": ""}
        except Exception as e:  # one clip's failure is reported, not fatal
            done[p] = {"path": p, "ok": "0", "energy": "", "valence": "", "error": f"{type(e).__name__}: {e}"[:200]}
        done[p]["source"], done[p]["track_id"] = ids[p]
        if k % 50 == 0:
            _write(done)
            print(f"{k}/{len(todo)} in {time.perf_counter() - t0:.0f} s", flush=True)
    _write(done)
    print(f"{len(todo)} scored in {time.perf_counter() - t0:.0f} s; {len(done)} rows in {OUT}")


def _write(done):
    tmp = OUT.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["source", "track_id", "path", "ok", "energy", "valence", "error"])
        w.writeheader()
        w.writerows(done.values())
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main(sys.argv[1:])
