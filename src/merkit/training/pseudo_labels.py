"""Progressive Confidence Labelling (PCL, paper §IV-C, Algorithm 1 lines 3-5 and 9-14).

Per epoch ``t`` of ``T`` a temperature ``tau`` and a threshold ``theta`` are scheduled::
    rho   = (t - 1) / T
    tau   = tau_min + (1 - rho) * (tau_max - tau_min)        1.5 -> 0.7
    theta = max(theta_min, theta0 * (1 - rho))               0.65 -> 0.35

Per sample, with ``p_v = softmax(z_v / tau)``::
    JS = JS(p_mel, p_coch)        (Eq. 12)    reliability r = exp(-JS) in [1/2, 1]   (Eq. 13)
    c  = r * max p_fuse           (Eq. 15)    selected if c >= theta, y_hat = argmax p_fuse

``p_fuse`` is the fused head's ``softmax(z_fuse / tau)`` as in Algorithm 1 (default,
``fused="head"``), or the mean of the two views ``(p_mel + p_coch) / 2`` as in Eq. 14
(``fused="views"``). Algorithm 1 is the procedure the authors ran, so it is the default; Eq. 14
is kept for the ablation. The pseudo-labels, reliabilities and confidences carry no gradient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .losses import js_divergence
from .distributed import all_reduce_sum


@dataclass(frozen=True)
class PCLSchedule:
    """Curriculum of temperature and threshold over the epochs (Algorithm 1, lines 3-5).

    ``rho_mode="paper"`` uses ``rho = (t - 1) / T``, so ``tau`` starts at ``tau_max`` but ends at
    ``tau_min + (tau_max - tau_min) / T`` (0.71 for T = 80); ``"inclusive"`` uses
    ``(t - 1) / (T - 1)`` and reaches ``tau_min`` on the last epoch.
    """

    tau_max: float = 1.5
    tau_min: float = 0.7
    theta0: float = 0.65
    theta_min: float = 0.35
    rho_mode: str = "paper"

    @classmethod
    def from_config(cls, cfg) -> "PCLSchedule":
        return cls(cfg.tau_max, cfg.tau_min, cfg.theta0, cfg.theta_min, cfg.pcl_rho)

    def rho(self, epoch: int, epochs: int) -> float:
        """Progress in [0, 1] of 1-based ``epoch`` out of ``epochs``."""
        if not 1 <= epoch <= epochs:
            raise ValueError(f"epoch must be in 1..{epochs}, got {epoch}")
        if self.rho_mode == "paper":
            return (epoch - 1) / epochs
        return (epoch - 1) / (epochs - 1) if epochs > 1 else 1.0

    def at_rho(self, rho: float) -> tuple[float, float]:
        tau = self.tau_min + (1.0 - rho) * (self.tau_max - self.tau_min)
        theta = max(self.theta_min, self.theta0 * (1.0 - rho))
        return tau, theta

    def __call__(self, epoch: int, epochs: int) -> tuple[float, float]:
        """``(tau, theta)`` for 1-based ``epoch``."""
        return self.at_rho(self.rho(epoch, epochs))


@dataclass
class PseudoLabels:
    """Per-sample PCL quantities, all ``(B,)`` and detached."""

    labels: torch.Tensor  # long, argmax p_fuse
    mask: torch.Tensor  # bool, confidence >= theta
    reliability: torch.Tensor  # r = exp(-JS), in [0.5, 1]
    confidence: torch.Tensor  # c = r * max p_fuse
    js: torch.Tensor  # JS(p_mel, p_coch), in [0, log 2]


@torch.no_grad()
def select_pseudo_labels(logits_mel: torch.Tensor, logits_coch: torch.Tensor,
                         logits_fused: torch.Tensor, *, tau: float, theta: float,
                         fused: str = "head") -> PseudoLabels:
    """Pseudo-labels from the three heads' logits ``(B, C)`` (Eqs. 12-15)."""
    log_p_mel = F.log_softmax(logits_mel.float() / tau, -1)
    log_p_coch = F.log_softmax(logits_coch.float() / tau, -1)
    js = js_divergence(log_p_mel, log_p_coch)
    r = torch.exp(-js)
    if fused == "head":
        p_fuse = F.softmax(logits_fused.float() / tau, -1)
    elif fused == "views":
        p_fuse = 0.5 * (log_p_mel.exp() + log_p_coch.exp())
    else:
        raise ValueError(f"fused must be 'head' or 'views', got {fused!r}")
    p_max, labels = p_fuse.max(-1)
    c = r * p_max
    return PseudoLabels(labels=labels, mask=c >= theta, reliability=r, confidence=c, js=js)


class PCLStats:
    """Running per-epoch statistics of the pseudo-labelling, kept on the device as tensors so
    that accumulating them costs no host synchronisation; :meth:`summary` reads them once."""

    _FIELDS = ("conf", "conf2", "rel", "rel2", "mask", "strength", "js")

    def __init__(self):
        self.sums: torch.Tensor | None = None
        self.count = 0

    def update(self, pl: PseudoLabels) -> None:
        m = pl.mask.float()
        row = torch.stack([pl.confidence.sum(), (pl.confidence ** 2).sum(), pl.reliability.sum(),
                           (pl.reliability ** 2).sum(), m.sum(), (pl.reliability * m).sum(),
                           pl.js.sum()])
        self.sums = row if self.sums is None else self.sums + row
        self.count += int(pl.mask.numel())

    def summary(self) -> dict[str, float]:
        """Means and standard deviations over all samples seen; ``strength`` is the mean of
        ``r * [c >= theta]``, the average weight a sample receives in L_PL."""

        sums, count = self.sums, self.count
        if sums is not None:  # under DDP: the statistics of all ranks' samples
            total = all_reduce_sum(torch.cat([sums.double(), sums.new_tensor([count], dtype=torch.float64)]))
            sums, count = total[:-1], int(total[-1].item())
        if sums is None or count == 0:
            return {k: math.nan for k in ("pcl_conf_mean", "pcl_conf_std", "pcl_rel_mean",
                                          "pcl_rel_std", "pcl_mask_ratio", "pcl_strength", "pcl_js")}
        s = dict(zip(self._FIELDS, (v / count for v in sums.double().tolist())))
        return {
            "pcl_conf_mean": s["conf"],
            "pcl_conf_std": math.sqrt(max(s["conf2"] - s["conf"] ** 2, 0.0)),
            "pcl_rel_mean": s["rel"],
            "pcl_rel_std": math.sqrt(max(s["rel2"] - s["rel"] ** 2, 0.0)),
            "pcl_mask_ratio": s["mask"],
            "pcl_strength": s["strength"],
            "pcl_js": s["js"],
        }
