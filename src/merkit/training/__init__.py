"""Training: the loss terms, Progressive Confidence Labelling, the memory queue, the loop and
checkpoints (paper §IV-C to §IV-E)."""
from ..checkpoint import load_checkpoint, save_checkpoint
from .losses import (classification_loss, js_divergence, js_divergence_probs, pseudo_label_loss,
                     supervised_contrastive_loss, view_consistency_loss)
from .loop import StopTraining, Trainer, fit
from .runner import train
from .memory_queue import MemoryQueue, MomentumEncoder
from .pseudo_labels import PCLSchedule, PseudoLabels, select_pseudo_labels

__all__ = ["load_checkpoint", "save_checkpoint", "classification_loss", "js_divergence",
           "js_divergence_probs", "pseudo_label_loss", "supervised_contrastive_loss",
           "view_consistency_loss", "StopTraining", "Trainer", "fit", "train", "MemoryQueue",
           "MomentumEncoder", "PCLSchedule", "PseudoLabels", "select_pseudo_labels"]
