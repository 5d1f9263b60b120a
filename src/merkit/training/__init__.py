"""Training: the loss terms, Progressive Confidence Labelling, the memory queue, the loop, the
seed runner and the runs built on it (compare, ablation) (paper §IV-C to §IV-E).

The names below are imported on first use, so that reading a light module of this package (the
ablation's combinations for ``merkit ablate --help``) does not import torch.
"""
import importlib

_LAZY = {
    "load_checkpoint": "..checkpoint", "save_checkpoint": "..checkpoint",
    **{n: ".losses" for n in ("classification_loss", "js_divergence", "js_divergence_probs", "pseudo_label_loss",
                              "supervised_contrastive_loss", "view_consistency_loss")},
    "StopTraining": ".loop", "Trainer": ".loop", "fit": ".loop", "train": ".runner",
    "MemoryQueue": ".memory_queue", "MomentumEncoder": ".memory_queue",
    "PCLSchedule": ".pseudo_labels", "PseudoLabels": ".pseudo_labels", "select_pseudo_labels": ".pseudo_labels",
}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
