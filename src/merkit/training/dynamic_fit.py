"""Training and scoring of dynamic (2 Hz) models on ``merkit extract-dynamic`` folders.

Metrics follow MediaEval 2015 / DEAM: per song, over its annotated frames, RMSE, Pearson r and
Lin's CCC of valence and of arousal; then the mean over songs (a song whose target or
prediction is constant has no r and is left out of r's mean; its CCC is 0 when the prediction
is constant). Selection: the epoch with the best mean per-song CCC (valence and arousal) on the
validation part; the test part is predicted once.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..models.dsaml import DSAML, DSAMLConfig
from .epochs import EarlyStopping, fit_epochs, optimiser_step

DIMS = ("v", "a")


@dataclass(frozen=True)
class DynamicTrainConfig:
    epochs: int = 150
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 16
    patience: int = 20
    # "ccc": 1 - CCC per song (chosen on validation medleys, bench/dynamic_grid.py), or "mse" per frame
    loss: str = "ccc"
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("mse", "ccc"):
            raise ValueError(f"loss must be 'mse' or 'ccc', got {self.loss!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _ccc(p: np.ndarray, t: np.ndarray) -> float:
    mp, mt = p.mean(), t.mean()
    vp, vt = p.var(), t.var()
    cov = ((p - mp) * (t - mt)).mean()
    den = vp + vt + (mp - mt) ** 2
    return float(2 * cov / den) if den > 0 else float("nan")


# A curve whose standard deviation is below this does not move: a flat target has no r (the song
# is left out of the mean r; medley targets of clips with equal labels keep ~1e-4 of filter
# start-up), a flat prediction has r = 0 (it follows nothing).
FLAT = 1e-3


def song_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Mean over songs of RMSE, r and CCC per dimension; ``pred``/``true`` (N, T, 2) = (V, A),
    NaN where a frame is not annotated. r: see :data:`FLAT`."""
    out = {}
    for j, d in enumerate(DIMS):
        rmse, r, ccc = [], [], []
        for p, t in zip(pred[..., j], true[..., j]):
            m = np.isfinite(t) & np.isfinite(p)
            if m.sum() < 2:
                continue
            p, t = p[m].astype(np.float64), t[m].astype(np.float64)
            rmse.append(math.sqrt(float(np.mean((p - t) ** 2))))
            if t.std() > FLAT:
                r.append(float(np.corrcoef(p, t)[0, 1]) if p.std() > FLAT else 0.0)
            c = _ccc(p, t)
            ccc.append(0.0 if math.isnan(c) else c)
        out[f"{d}_rmse"] = float(np.mean(rmse)) if rmse else float("nan")
        out[f"{d}_r"] = float(np.mean(r)) if r else float("nan")
        out[f"{d}_ccc"] = float(np.mean(ccc)) if ccc else float("nan")
    return out


def selection_score(m: dict[str, float]) -> float:
    return float(np.nanmean([m["v_ccc"], m["a_ccc"]]))


def _ccc_loss(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - CCC per song and dimension over its valid frames, averaged. (B, T, 2) each."""
    w = mask.float()
    n = w.sum(1).clamp_min(1)
    mp, mt = (pred * w).sum(1) / n, (true * w).sum(1) / n
    dp, dt = (pred - mp[:, None]) * w, (true - mt[:, None]) * w
    vp, vt, cov = (dp ** 2).sum(1) / n, (dt ** 2).sum(1) / n, (dp * dt).sum(1) / n
    ccc = 2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)
    return (1 - ccc).mean()


@dataclass
class DynamicFit:
    model: DSAML
    best_epoch: int  # 1-based, as in every family (history[best_epoch - 1])
    val: dict
    history: list


def targets(ds, idx) -> np.ndarray:
    """(n, T, 2) = (valence, arousal) of rows ``idx`` of a DynamicSet."""
    return np.stack([np.asarray(ds.dyn_v)[idx], np.asarray(ds.dyn_a)[idx]], axis=-1).astype(np.float32)


@torch.inference_mode()
def predict(model: DSAML, frames: np.ndarray, globals_: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    outs = []
    for i in range(0, len(frames), batch):
        f = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch], dtype=np.float32))
        g = torch.from_numpy(np.ascontiguousarray(globals_[i:i + batch], dtype=np.float32))
        o = model(f, g).numpy()
        o[~np.isfinite(f.numpy()).all(-1)] = np.nan
        outs.append(o)
    return np.concatenate(outs)


def fit_dynamic(ds, train: np.ndarray, val: np.ndarray, model_cfg: DSAMLConfig = DSAMLConfig(),
                cfg: DynamicTrainConfig = DynamicTrainConfig()) -> DynamicFit:
    """Train on rows ``train`` of a DynamicSet, choose the epoch on rows ``val``."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    frames = np.asarray(ds.frames)
    globals_ = np.asarray(ds.global_)
    model_cfg = DSAMLConfig(**{**model_cfg.to_dict(), "frame_dim": frames.shape[-1], "global_dim": globals_.shape[-1]})
    model = DSAML(model_cfg)
    ft, gt = torch.from_numpy(frames[train].astype(np.float32)), torch.from_numpy(globals_[train].astype(np.float32))
    yt = torch.from_numpy(targets(ds, train))
    model.set_normalisation(ft, gt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    yv = targets(ds, val)
    need = model_cfg.diag_weight > 0 and model_cfg.global_

    def train_epoch(epoch: int) -> dict:
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            y = yt[b]
            mask = torch.isfinite(y) & torch.isfinite(ft[b]).all(-1, keepdim=True)
            res = model(ft[b], gt[b], need_attention=need)
            out, attn = res if need else (res, None)
            y0 = torch.nan_to_num(y)
            if cfg.loss == "mse":
                loss = ((out - y0) ** 2 * mask).sum() / mask.sum().clamp_min(1)
            else:
                loss = _ccc_loss(out, y0, mask)
            if attn is not None:
                loss = loss + model_cfg.diag_weight * model.diagonal_loss(attn, mask.all(-1).float())
            optimiser_step(opt, loss, clip=5.0, params=model.parameters())
            losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}

    def validate(epoch: int) -> tuple[float, dict]:
        m = song_metrics(predict(model, frames[val], globals_[val]), yv)
        return selection_score(m), m

    # min_delta: a CCC gain below 1e-6 is noise, not a better epoch
    run = fit_epochs(model, epochs=cfg.epochs, train_epoch=train_epoch, validate=validate,
                     stopping=EarlyStopping(cfg.patience, min_delta=1e-6))
    return DynamicFit(model=model, best_epoch=run.best_epoch, val=run.history[run.best_epoch - 1]["val"],
                      history=run.history)


__all__ = ["DynamicTrainConfig", "fit_dynamic", "song_metrics", "predict", "targets", "selection_score"]
