"""Models by name, and loading a trained model from its checkpoint alone.

>>> model = load_model("runs/memo_a/seed_0/best.pt")     # eval mode, takes raw features
>>> probs = model.predict_proba(mel, coch)["ensemble"]    # (B, C)

Every model family is a :class:`ModelSpec` in :data:`MODELS`, the one registry. A torch model
of the one-folder training loop names its ``nn.Module`` class and the
:class:`~merkit.training.objective.Objective` it trains with; a classical model names its
scikit-learn wrapper; the unified (multi-corpus) and DSAML (2 Hz) families name their network
and the training config of their own runner (``merkit train --arch unified|dsaml``). Adding a
model is one module plus one entry here.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import ModelConfig, from_dict

if TYPE_CHECKING:
    from torch import nn

# Re-exported, imported on first use: listing the models (``merkit train --help``, ``compare
# --list``) needs no torch.
_LAZY = {"DAMER": ".damer", "DamerOutput": ".damer", "head_probabilities": ".damer"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: where its code lives and how it trains by default."""

    name: str
    summary: str
    # "torch": trained by merkit.training.loop; "classical": scikit-learn; "unified" / "dynamic":
    # trained by their own runners (merkit.training.unified_fit / dynamic_fit) on stored embeddings
    kind: str
    model: str  # "module:Class" (lazy, so that listing models imports nothing heavy)
    objective: str = "merkit.training.objective:Objective"
    # TrainConfig values this model trains with unless the command line says otherwise
    train_defaults: dict = field(default_factory=dict)
    # ModelConfig values likewise
    model_defaults: dict = field(default_factory=dict)
    # families outside the loop: their training config ("module:Class") and the command-line
    # options they take (flag names as config fields; any other training flag is refused)
    train_config: str = ""
    cli_flags: tuple[str, ...] = ()

    @property
    def in_loop(self) -> bool:
        """Trained by the one-folder loop (so compare, ablate, --resume and plot serve it)."""
        return self.kind in LOOP_KINDS

    def train_config_class(self):
        return _load(self.train_config)

    def model_class(self):
        return _load(self.model)

    def objective_class(self):
        return _load(self.objective)


def _load(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


LOOP_KINDS = ("torch", "classical")

# The CNN defaults follow the usual recipe for small Mel-spectrogram corpora (and the issue's
# "early stopping and learning-rate reduction on a validation plateau"): batch 32 so that a
# few hundred clips still give tens of steps per epoch, plateau schedule, patience 10.
_CNN_DEFAULTS = {"epochs": 60, "batch_size": 32, "lr": 1e-3, "scheduler": "plateau", "patience": 10,
                 "select_metric": "loss", "augment": True}

MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("damer", "DAMER: Mel + cochleagram band tokens, cross-view attention (DSAF), PCL "
                       "pseudo-labels, SAML memory (Memo2496 paper)",
              "torch", "merkit.models.damer:DAMER", "merkit.training.damer_objective:DamerObjective"),
    ModelSpec("musefuse", "MuseFuse: Mel / cochleagram / fused branches with ProtoAlign, "
                          "ReliaPseudo and TriDistill",
              "torch", "merkit.models.musefuse:MuseFuse", "merkit.training.musefuse_objective:MuseFuseObjective"),
    ModelSpec("resnet", "residual CNN on the Mel spectrogram (7x7 stem, 4 stages 64-512), "
                        "SpecAugment-style augmentation",
              "torch", "merkit.models.resnet:ResNetMER", "merkit.training.cnn_objective:CNNObjective",
              _CNN_DEFAULTS),
    ModelSpec("shortchunk", "short-chunk ResNet (EMOPIA's audio baseline): random chunks in "
                            "training, chunk average at inference",
              "torch", "merkit.models.resnet:ShortChunkResNet", "merkit.training.cnn_objective:CNNObjective",
              _CNN_DEFAULTS, {"dropout": 0.5}),  # Won et al. 2020's dropout before the output
    ModelSpec("svm", "SVM (RBF) on handcrafted descriptors: MFCC, chroma, spectral statistics "
                     "(the paper's Table II baseline)", "classical", "merkit.models.classical:ClassicalModel"),
    ModelSpec("logreg", "logistic regression on mean MFCCs (EMOPIA's baseline)", "classical",
              "merkit.models.classical:ClassicalModel"),
    ModelSpec("unified", "unified model across corpora (Music2Emo): an MLP on encoder embeddings and key/chord "
                         "features with dimensional and per-corpus categorical heads, optional distillation; "
                         "the shipped model's family", "unified", "merkit.models.unified:UnifiedMER", objective="",
              train_config="merkit.training.unified_fit:UnifiedTrainConfig",
              cli_flags=("epochs", "lr", "weight_decay", "patience", "kd_weight", "kd_temperature", "inputs")),
    ModelSpec("dsaml", "DSAML: 2 Hz valence/arousal curves from encoder frames (local and global attention, "
                       "BiLSTM) on a `merkit extract-dynamic` folder", "dynamic", "merkit.models.dsaml:DSAML",
              objective="", train_config="merkit.training.dynamic_fit:DynamicTrainConfig",
              cli_flags=("epochs", "lr", "weight_decay", "patience", "batch_size")),
)}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, cfg: ModelConfig) -> "nn.Module":
    """A freshly initialised torch model ``name`` of architecture ``cfg``."""
    spec = get_spec(name)
    if spec.kind != "torch":
        raise ValueError(f"{name} is a {spec.kind} model, not a torch network")
    return spec.model_class()(cfg)


def resolve_head(cfg: ModelConfig) -> str:
    """The head a model predicts with: ``cfg.inference_head``, or the model's own
    ``default_head`` when that is ``auto``."""
    if cfg.inference_head != "auto":
        return cfg.inference_head
    return getattr(get_spec(cfg.name).model_class(), "default_head", "ensemble")


def load_model(path: str | os.PathLike, *, map_location="cpu") -> "nn.Module":
    """Rebuild a trained torch model (with its feature normalisation) from a checkpoint, in
    eval mode."""
    from ..checkpoint import load_checkpoint

    return network_from_checkpoint(load_checkpoint(path, map_location=map_location), path)


def network_from_checkpoint(ckpt: dict, source: str | os.PathLike = "checkpoint") -> "nn.Module":
    """:func:`load_model` of a checkpoint dict already read (``source`` names it in errors)."""
    path = source
    spec = MODELS.get(ckpt["kind"])
    if spec is None or spec.kind != "torch":
        raise ValueError(f"{path}: a {ckpt['kind']} model file, not a network of the DAMER training loop "
                         "(merkit.predict.load_model reads every family)")
    cfg = from_dict(ModelConfig, ckpt["model_config"])
    model = build_model(cfg.name, cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the stored {cfg.name} config: {e}") from None
    return model.eval()


__all__ = ["LOOP_KINDS", "MODELS", "ModelSpec", "DAMER", "DamerOutput", "build_model", "get_spec", "resolve_head",
           "head_probabilities", "load_model", "network_from_checkpoint"]
