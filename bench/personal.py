"""Personalised prediction on Emotify listener groups: k-shot adaptation against the population.

    python bench/personal.py --emotify feats/emotify        # writes bench/results/personal.{json,md}

Tasks: listener groups (age band × gender × mother tongue; merkit.personal.listener_groups),
each group's own V/A per track from its votes. Per seed (0-4): tracks split 70 / 30 and groups
split 70 / 30, both at random. On training tracks: the population model (a head on musicnn
embeddings, every listener's V/A) and, from it, first-order MAML over the training groups.
Held-out groups are adapted on k = 1, 5, 20 of their *test* tracks (5 draws each) and scored on
their other test tracks: RMSE of (valence, arousal) against the group's own labels, for the
population model as it is, the population model fine-tuned on the k examples (same steps and
learning rate as MAML's inner loop) and the MAML initialisation adapted the same way. The
inner learning rate is chosen per seed on the training groups' training tracks (5-shot
fine-tuning of the population model, scored on the tasks' other tracks), never on test tracks.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KS = (1, 5, 20)
DRAWS = 5
MIN_QUERY = 5
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emotify", required=True, help="Emotify feature folder with the musicnn view")
    ap.add_argument("--annotations", default=str(ROOT.parent / "shared" / "data" / "emotify" / "annotations.csv"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args(argv)

    import torch

    from merkit.data.emotify import gems_to_va, read_annotations
    from merkit.data.memo2496 import load_memo2496
    from merkit.personal import MetaConfig, adapt, fit_population, fomaml, listener_groups

    torch.set_num_threads(1)
    fs = load_memo2496(args.emotify)
    emb = np.asarray(fs.view("musicnn"), dtype=np.float64)
    ids = [int(t.track_id) for t in fs.tracks]
    row = {tid: i for i, tid in enumerate(ids)}
    pop = read_annotations(args.annotations)
    y_pop = np.array([gems_to_va(pop[t]["gems"]) for t in ids])
    groups = listener_groups(args.annotations)
    names = sorted(groups)
    cfg = MetaConfig()
    results = {m: {k: [] for k in KS} for m in ("population", "fine-tuned", "MAML")}
    t0 = time.process_time()
    chosen_lr = []
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(ids))
        tr_rows, te_rows = set(perm[:int(0.7 * len(ids))]), set(perm[int(0.7 * len(ids)):])
        gperm = rng.permutation(len(names))
        g_tr = [names[i] for i in gperm[:int(0.7 * len(names))]]
        g_te = [names[i] for i in gperm[int(0.7 * len(names)):]]
        tr_idx = np.array(sorted(tr_rows))
        mu, sd = emb[tr_idx].mean(0), emb[tr_idx].std(0) + 1e-6
        X = torch.from_numpy(((emb - mu) / sd).astype(np.float32))
        population = fit_population(X[tr_idx], torch.from_numpy(y_pop[tr_idx].astype(np.float32)), seed=seed)
        tasks = []
        for g in g_tr:
            rows = [row[t] for t in groups[g] if t in row and row[t] in tr_rows]
            if len(rows) >= cfg.support + MIN_QUERY:
                y = np.array([groups[g][ids[r]] for r in rows], dtype=np.float32)
                tasks.append((X[rows], torch.from_numpy(y)))
        # the inner learning rate, chosen on the training groups' own tracks (never a test track):
        # fine-tune the population model on 5 of a task's tracks, score the task's others
        lr_err = {}
        for lr in LR_GRID:
            e = []
            for x, y in tasks:
                p = rng.permutation(len(x))
                m = adapt(population, x[p[:5]], y[p[:5]], steps=cfg.inner_steps, lr=lr)
                with torch.no_grad():
                    e.append(float(((m(x[p[5:]]) - y[p[5:]]) ** 2).mean()))
            lr_err[lr] = float(np.mean(e))
        inner_lr = min(lr_err, key=lr_err.get)
        chosen_lr.append(inner_lr)
        meta = fomaml(population, tasks, MetaConfig(seed=seed, inner_lr=inner_lr))
        for g in g_te:
            rows = np.array([row[t] for t in groups[g] if t in row and row[t] in te_rows])
            y = np.array([groups[g][ids[r]] for r in rows], dtype=np.float32)
            for k in KS:
                if len(rows) < k + MIN_QUERY:
                    continue
                errs = {m: [] for m in results}
                for _ in range(DRAWS):
                    p = rng.permutation(len(rows))
                    s, q = p[:k], p[k:]
                    xs, ys = X[rows[s]], torch.from_numpy(y[s])
                    xq, yq = X[rows[q]], y[q]
                    for name, model in (("population", population),
                                        ("fine-tuned", adapt(population, xs, ys, steps=cfg.inner_steps, lr=inner_lr)),
                                        ("MAML", adapt(meta, xs, ys, steps=cfg.inner_steps, lr=inner_lr))):
                        with torch.no_grad():
                            pred = model(xq).numpy()
                        errs[name].append(float(np.sqrt(np.mean((pred - yq) ** 2))))
                    errs.setdefault("all listeners' labels", []).append(
                        float(np.sqrt(np.mean((y_pop[rows[q]] - yq) ** 2))))
                for name in errs:
                    results.setdefault(name, {kk: [] for kk in KS})[k].append({"seed": seed, "group": g, "n_test_tracks": int(len(rows)),
                                             "rmse": float(np.mean(errs[name]))})
        print(f"seed {seed}: {len(tasks)} training tasks, {len(g_te)} held-out groups", flush=True)
    out = {"date": time.strftime("%Y-%m-%d"), "groups": {g: len(t) for g, t in groups.items()},
           "meta": cfg.to_dict(), "inner_lr_chosen_per_seed": chosen_lr, "cpu_seconds": time.process_time() - t0, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "personal.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Personalised prediction on Emotify listener groups (`python bench/personal.py`)", "",
             f"{out['date']}; {len(groups)} groups (age band × gender × mother tongue, ≥ 40 tracks each); seeds "
             f"{args.seeds}; held-out groups adapted on k of their test tracks (5 draws), scored on the rest. "
             "RMSE of (valence, arousal) against the group's own labels; mean ± std over (group, seed) cells; "
             "gain = population RMSE − method RMSE, per cell. Reference: the RMSE of the track's all-listener label "
             "itself against the group's, i.e. how far a group's votes are from everyone's.", "",
             "| k | cells | population | fine-tuned head | gain | MAML + adaptation | gain | all listeners' labels (reference) |",
             "|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for k in KS:
        pop_r = np.array([c["rmse"] for c in results["population"][k]])
        if not len(pop_r):
            continue
        ft = np.array([c["rmse"] for c in results["fine-tuned"][k]])
        ma = np.array([c["rmse"] for c in results["MAML"][k]])
        f = lambda a: f"{a.mean():.4f} ± {a.std():.4f}"
        orc = np.array([c["rmse"] for c in results["all listeners' labels"][k]])
        lines.append(f"| {k} | {len(pop_r)} | {f(pop_r)} | {f(ft)} | {f(pop_r - ft)} | {f(ma)} | {f(pop_r - ma)} | {f(orc)} |")
    (RESULTS / "personal.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
