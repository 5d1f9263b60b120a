"""The loss terms of DAMER's objective (paper Eq. 22), each a separate function.

``L = w_cls * L_cls + w_pl * L_PL + w_js * JS(p_mel, p_coch) + w_cont * L_cont``; the training
step (:mod:`merkit.training.loop`) combines them with the weights of
:class:`merkit.config.TrainConfig`. All terms are computed in float32 whatever the autocast
precision of the logits.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .distributed import batch_mean, global_denominator

LOG2 = math.log(2.0)  # the upper bound of the Jensen-Shannon divergence in nats
# Fill value for logits of empty queue slots: exp(-1e9) underflows to 0 in float32, but unlike
# -inf it keeps logsumexp and its gradient finite when a row has no valid key at all.
MASKED_LOGIT = -1e9


def js_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) between rows of two categorical distributions (Eq. 12).

    ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``; it is 0 iff
    ``p = q`` and at most ``log 2`` for any number of classes.

    Parameters
    ----------
    log_p, log_q : (..., C) log-probabilities (e.g. ``log_softmax(z / tau)``).

    Returns
    -------
    (...) the divergence of each row.
    """
    log_p, log_q = log_p.float(), log_q.float()
    # log m = log((p + q) / 2), computed from the logs so that tiny probabilities stay exact.
    log_m = torch.logaddexp(log_p, log_q) - LOG2
    p, q = log_p.exp(), log_q.exp()
    kl_pm = (p * (log_p - log_m)).sum(-1)
    kl_qm = (q * (log_q - log_m)).sum(-1)
    # Rounding can leave -1e-8 where the divergence is 0; the clamp keeps r = exp(-JS) <= 1.
    return (0.5 * (kl_pm + kl_qm)).clamp(0.0, LOG2)


def js_divergence_probs(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """:func:`js_divergence` for probabilities (zeros allowed: ``0 log 0 = 0``)."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl_pm = (torch.special.xlogy(p, p) - torch.special.xlogy(p, m)).sum(-1)
    kl_qm = (torch.special.xlogy(q, q) - torch.special.xlogy(q, m)).sum(-1)
    return (0.5 * (kl_pm + kl_qm)).clamp(0.0, LOG2)


def view_consistency_loss(logits_mel: torch.Tensor, logits_coch: torch.Tensor,
                          tau: float) -> torch.Tensor:
    """Mean ``JS(softmax(z_mel / tau), softmax(z_coch / tau))`` over the batch (Eq. 22, 3rd term)."""
    return batch_mean(js_divergence(F.log_softmax(logits_mel.float() / tau, -1),
                                    F.log_softmax(logits_coch.float() / tau, -1)))


def classification_loss(logits: dict[str, torch.Tensor] | list[torch.Tensor],
                        target: torch.Tensor) -> torch.Tensor:
    """``L_cls``: cross-entropy of each head against the labels, summed over the heads (Eq. 22
    adds one CE term per head; the three heads are the Mel, cochleagram and fused ones)."""
    heads = logits.values() if isinstance(logits, dict) else logits
    return sum(batch_mean(F.cross_entropy(z.float(), target, reduction="none")) for z in heads)


def pseudo_label_loss(logits: torch.Tensor, pseudo: torch.Tensor, weight: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """``L_PL`` (Eq. 17): mean over the selected samples of ``r * CE(z, y_hat)``.

    Parameters
    ----------
    logits : (B, C) logits being trained (the fused head's).
    pseudo : (B,) pseudo-labels ``argmax p_fuse``.
    weight : (B,) reliability ``r``; treated as a constant (no gradient flows through it).
    mask : (B,) bool, ``c >= theta``.

    Returns 0 (with a gradient path) when nothing is selected; no host synchronisation.
    """
    ce = F.cross_entropy(logits.float(), pseudo, reduction="none")
    m = mask.to(ce.dtype)
    return (weight.detach().to(ce.dtype) * ce * m).sum() / global_denominator(m.sum(), floor=1.0)


def supervised_contrastive_loss(queries: torch.Tensor, labels: torch.Tensor, keys: torch.Tensor,
                                key_labels: torch.Tensor, key_valid: torch.Tensor,
                                tau: float) -> torch.Tensor:
    """Supervised InfoNCE of batch queries against a memory of keys (Eqs. 19-20).

    For a query ``q_i`` with label ``y_i``, positives ``P(i)`` are the valid keys with the same
    label and the denominator runs over all valid keys ``A``::

        l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(q_i.k_p / tau) / sum_{a in A} exp(q_i.k_a / tau) )

    i.e. the sum over positives is normalised by their count *outside* the log (Khosla et al.
    2020's ``L_out``, the variant they found to train better). The loss is the mean of ``l_i``
    over the queries that have at least one positive; 0 when none has.

    Parameters
    ----------
    queries : (B, E) features; L2-normalised here.
    labels : (B,) int class of each query.
    keys : (K, E) memory keys (L2-normalised by the queue).
    key_labels : (K,) int; key_valid : (K,) bool, False for never-filled slots.
    tau : temperature (0.07 in the paper).
    """
    q = F.normalize(queries.float(), dim=-1)
    logits = q @ keys.float().t() / tau  # (B, K)
    logits = logits.masked_fill(~key_valid[None, :], MASKED_LOGIT)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == key_labels[None, :]) & key_valid[None, :]  # (B, K)
    n_pos = pos.sum(1)
    per_query = -(log_prob * pos).sum(1) / n_pos.clamp_min(1)
    has_pos = (n_pos > 0).to(per_query.dtype)
    return (per_query * has_pos).sum() / global_denominator(has_pos.sum(), floor=1.0)
