"""A trained network over stored features: every head's output, batched (evaluation,
validation under DDP, the benchmarks)."""
from __future__ import annotations

import numpy as np
import torch

from .blocks import head_outputs


def _as_tensor(x, device) -> torch.Tensor:
    if torch.is_tensor(x):
        return x.to(device=device, dtype=torch.float32)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)


@torch.no_grad()
def predict_heads(model: torch.nn.Module, mel, coch, *, batch_size: int = 512,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Every head's output (:func:`head_outputs`: probabilities ``(N, C)`` or regression values
    ``(N,)``) for raw features ``mel (N, n_mels, T)``, ``coch (N, n_coch, T)`` (arrays or
    tensors), in eval mode and in batches. A classical model (with ``predict_heads``) is
    called on the arrays directly."""
    if hasattr(model, "predict_heads"):
        return model.predict_heads(np.asarray(mel), np.asarray(coch))
    was_training = model.training
    model.eval()
    out: dict[str, list[np.ndarray]] = {}
    try:
        for s in range(0, len(mel), batch_size):
            m, c = (_as_tensor(x[s:s + batch_size], device) for x in (mel, coch))
            for head, p in head_outputs(model(m, c).head_logits()).items():
                out.setdefault(head, []).append(p.float().cpu().numpy())
    finally:
        model.train(was_training)
    return {h: np.concatenate(v) for h, v in out.items()}


__all__ = ["predict_heads"]
