"""The unified model (after Music2Emo, Kang & Herremans 2025): one trunk over a pretrained
encoder's embedding plus musical features, a dimensional head and one categorical head per
label set, trained across corpora.

::

    x = [musicnn pooled (1906) | tonal summary (31)] ──standardise──> trunk: L × (Linear, GELU, dropout)
        ├── "va"       (2)  valence, arousal scores (regression, per-corpus scaled targets)
        ├── "quadrant" (4)  EMOPIA's Russell quadrants (softmax)
        ├── "mirex"    (5)  the MIREX mood clusters (softmax)
        └── "gems"     (9)  Emotify's GEMS vote shares (independent sigmoids, soft targets)

Music2Emo uses MERT embeddings and pretrained key/chord models, which cannot be had here; merkit
uses musicnn (:mod:`merkit.encoders.musicnn`) and rule-based key/chord features
(:mod:`merkit.features.tonal`). The heads and the masked multi-task loss follow the paper.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

# head name -> (outputs, kind)
HEAD_SPECS = {"va": (2, "regression"), "quadrant": (4, "softmax"), "mirex": (5, "softmax"),
              "gems": (9, "sigmoid")}
VA_VALENCE, VA_AROUSAL = 0, 1  # columns of the "va" head


# the shipped model's inputs: musicnn (MSD) pooled embeddings and the key/chord summary
DEFAULT_INPUTS = ("musicnn", "tonal")


@dataclass(frozen=True)
class UnifiedConfig:
    """Everything the network needs; stored in its checkpoint."""

    input_dim: int
    hidden: int = 256
    layers: int = 2
    # chosen by leave-one-corpus-out validation (bench/unified_loco.py: 8 candidates, seeds 0-2;
    # 0.787 against 0.776 for 0.5 / 0.3, which in-corpus validation had chosen in
    # bench/unified_grid.py): the shipped model meets music from none of its corpora
    dropout: float = 0.7
    input_dropout: float = 0.5
    heads: tuple[str, ...] = ("va", "quadrant", "mirex", "gems")
    # which stored views make the input vector, in order (merkit.data.multi_corpus.input_matrix)
    inputs: tuple[str, ...] = DEFAULT_INPUTS

    def __post_init__(self):
        unknown = [h for h in self.heads if h not in HEAD_SPECS]
        if unknown:
            raise ValueError(f"unknown head {unknown[0]!r}; heads: {', '.join(HEAD_SPECS)}")
        if "va" not in self.heads:
            raise ValueError("the unified model needs the 'va' head")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UnifiedConfig":
        d = dict(d)
        for k in ("heads", "inputs"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


class UnifiedMER(nn.Module):
    """Input ``x (B, input_dim)`` (raw features: the module standardises them with the training
    statistics it stores) → ``{head: (B, outputs)}`` logits (softmax/sigmoid heads) or scores."""

    def __init__(self, cfg: UnifiedConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(cfg.input_dim))
        self.register_buffer("std", torch.ones(cfg.input_dim))
        layers: list[nn.Module] = [nn.Dropout(cfg.input_dropout)]
        width = cfg.input_dim
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({h: nn.Linear(width, HEAD_SPECS[h][0]) for h in cfg.heads})

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(torch.clamp(std, min=1e-6))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.cfg.input_dim:
            raise ValueError(f"expected (B, {self.cfg.input_dim}) features, got {tuple(x.shape)}")
        return self.trunk((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.embed(x)
        return {h: head(z) for h, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eval-mode outputs as probabilities (softmax / sigmoid heads) and scores ("va")."""
        was = self.training
        self.eval()
        out = self(x)
        self.train(was)
        probs = {}
        for h, v in out.items():
            kind = HEAD_SPECS[h][1]
            probs[h] = v.softmax(-1) if kind == "softmax" else v.sigmoid() if kind == "sigmoid" else v
        return probs


def unified_checkpoint(model: UnifiedMER, **fields) -> dict:
    """A format-2 checkpoint of ``model`` (``fields``: train_config, data_info, predictor, metrics)."""
    from ..checkpoint import make_checkpoint

    return make_checkpoint("unified", model.cfg.to_dict(), model.state_dict(), **fields)


def load_unified(blob: dict) -> UnifiedMER:
    """The network of a unified-model checkpoint (any layout :func:`merkit.checkpoint.upgrade` reads)."""
    from ..checkpoint import upgrade

    blob = upgrade(blob)
    if blob["kind"] != "unified":
        raise ValueError(f"a {blob['kind']} checkpoint, not a unified model")
    model = UnifiedMER(UnifiedConfig.from_dict(blob["model_config"]))
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return model.eval()


__all__ = ["DEFAULT_INPUTS", "UnifiedConfig", "UnifiedMER", "HEAD_SPECS", "unified_checkpoint", "load_unified",
           "VA_VALENCE", "VA_AROUSAL"]
