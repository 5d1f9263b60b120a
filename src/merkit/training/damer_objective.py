"""DAMER's objective (paper Eq. 22, Algorithm 1): classification + PCL + view consistency + SAML.

``L = w_cls L_cls + w_pl L_PL + w_js JS(p_mel, p_coch) + w_cont L_cont``. The memory queue and
its momentum key encoder are the objective's state; they are saved with every checkpoint.

With ``--regression`` the three heads regress the label with MSE, and PCL and SAML are off:
pseudo-labels, reliabilities and class anchors are defined for classes only.
"""
from __future__ import annotations

import torch

from .losses import (classification_loss, pseudo_label_loss, supervised_contrastive_loss,
                     view_consistency_loss)
from .augment import augment
from .distributed import all_gather_rows
from .memory_queue import MemoryQueue, MomentumEncoder
from .objective import Batch, Objective, supervised_loss
from .pseudo_labels import PCLSchedule, PCLStats, select_pseudo_labels


class DamerObjective(Objective):
    terms = ("loss", "cls", "pl", "js", "cont")
    semi_supervised = True

    def __init__(self, model, cfg, *, n_classes, device, forward=None):
        super().__init__(model, cfg, n_classes=n_classes, device=device, forward=forward)
        self.use_pcl = cfg.use_pcl and not self.regression
        self.use_saml = cfg.use_saml and not self.regression
        self.schedule = PCLSchedule.from_config(cfg)
        self.tau, self.theta = self.schedule(1, cfg.epochs)
        self.pcl_stats = PCLStats()
        fusion_dim = model.cfg.fusion_dim
        self.queue = MemoryQueue(cfg.queue_size, fusion_dim).to(device) if self.use_saml else None
        self.key_encoder = (MomentumEncoder(model, cfg.key_momentum)
                            if self.use_saml and cfg.key_momentum > 0 else None)
        self.key_forward = None
        if self.key_encoder is not None:
            from .loop import CompiledOrEager  # the loop's compile wrapper, for the key encoder too

            enc = self.key_encoder.encoder
            self.key_forward = CompiledOrEager(enc) if cfg.compile else enc

    def start_epoch(self, epoch: int) -> dict[str, float]:
        super().start_epoch(epoch)
        self.tau, self.theta = self.schedule(epoch, self.cfg.epochs)
        self.pcl_stats = PCLStats()
        return {"tau": self.tau, "theta": self.theta}

    def loss(self, batch: Batch):
        """Eq. 22 on a labelled batch (and an unlabelled one in the semi-supervised regime)."""
        cfg, n = self.cfg, batch.n
        mel, coch = batch.mel, batch.coch
        if cfg.augment and self.model.training:  # off by default (the paper has none)
            mel, coch = augment(mel, coch, self.model.norm)
        if batch.mel_u is not None:
            mel, coch = torch.cat([mel, batch.mel_u]), torch.cat([coch, batch.coch_u])
        out = self.forward(mel, coch)
        logits = {k: v[:n] for k, v in out.head_logits().items()}
        zero = logits["fused"].new_zeros((), dtype=torch.float32)
        if self.regression:
            l_cls = sum(supervised_loss(z, batch.y) for z in logits.values())
        else:
            l_cls = classification_loss(logits, batch.y)
        l_pl = l_js = l_cont = zero
        if self.use_pcl:
            # Algorithm 1 labels the labelled batch itself; with an unlabelled pool PCL labels
            # the pool's batch instead. The view-consistency term needs no labels: all samples.
            src = slice(n, None) if batch.mel_u is not None else slice(0, n)
            pl = select_pseudo_labels(out.logits_mel[src], out.logits_coch[src], out.logits_fused[src],
                                      tau=self.tau, theta=self.theta, fused=cfg.pcl_fused)
            l_pl = pseudo_label_loss(out.logits_fused[src], pl.labels, pl.reliability, pl.mask)
            l_js = view_consistency_loss(out.logits_mel, out.logits_coch, self.tau)
            self.pcl_stats.update(pl)
        if self.queue is not None:
            q = self.queue
            l_cont = supervised_contrastive_loss(out.z_fuse[:n], batch.y, q.keys, q.labels, q.valid,
                                                 cfg.cont_tau)
        total = cfg.w_cls * l_cls + cfg.w_pl * l_pl + cfg.w_js * l_js + cfg.w_cont * l_cont
        self._z = out.z_fuse[:n]
        terms = torch.stack([total, l_cls, l_pl, l_js, l_cont]).detach().float()
        return total, terms, logits

    def after_step(self, batch: Batch) -> None:
        """Eq. 18 / Algorithm 1 line 18: enqueue the batch's keys after the update. Only labelled
        features enter the queue: a wrong pseudo-label there would pull a class anchor towards
        the other class for ``K`` steps."""
        if self.queue is None:
            return
        if self.key_encoder is not None:
            self.key_encoder.update(self.model)
            with torch.no_grad():
                keys = self.key_forward(batch.mel, batch.coch).z_fuse
        else:
            keys = self._z.detach()
        # MoCo's all-gather: every rank enqueues the keys of the whole global batch in rank
        # order, so the queue is the same on all ranks and equal to one process's.
        self.queue.push(all_gather_rows(keys.float()), all_gather_rows(batch.y))

    def epoch_stats(self) -> dict[str, float]:
        out = {}
        if self.use_pcl:
            out.update(self.pcl_stats.summary())
        if self.queue is not None:
            out.update(self.queue.stats(self.n_classes))
        return out

    def state_dict(self) -> dict:
        return {"queue": self.queue.state_dict() if self.queue is not None else None,
                "key_encoder": self.key_encoder.state_dict() if self.key_encoder is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.queue is not None:
            self.queue.load_state_dict(state["queue"])
        if self.key_encoder is not None:
            self.key_encoder.load_state_dict(state["key_encoder"])
