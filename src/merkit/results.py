"""What a prediction is: :class:`Prediction` (one window), :class:`FileResult` (one input), and
the output maths every predictor shares (quadrant probabilities from the two marginals,
combining networks, the point on the valence-arousal plane)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .data.manifest import QUADRANT_WORDS

TASKS = ("quadrant", "a", "v")
# Quadrant q (1..4) is high arousal for Q1, Q2 and positive valence for Q1, Q4 (Russell 1980;
# the same convention as merkit.data.manifest.quadrant_from_va).
_HIGH_A = np.array([1.0, 1.0, 0.0, 0.0])
_POS_V = np.array([1.0, 0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Prediction:
    """The emotion of one analysis window.

    ``arousal`` and ``valence`` are probabilities of high arousal and positive valence; the
    ``*_score`` fields hold a continuous estimate where the model has a regression output
    (DAMER has none: ``None``). ``start`` / ``end`` are seconds into the track (for a clip
    shorter than the window, the clip was looped to fill it: ``looped``). ``certainty`` is the
    probability of ``quadrant``; ``view_agreement`` DAMER's agreement of its two views (None for
    other models). A window with no music in it has every emotion field None and a ``warning``.
    """

    arousal: float | None
    valence: float | None
    quadrant: int | None  # 1..4
    quadrant_word: str | None
    quadrant_probs: tuple[float, float, float, float] | None
    certainty: float | None
    start: float
    end: float
    looped: bool = False
    view_agreement: float | None = None
    arousal_score: float | None = None
    valence_score: float | None = None
    # mood words (unified model): the most likely MIREX cluster and its adjectives, and the
    # predicted share of listeners who would tick each GEMS emotion
    mood_cluster: int | None = None
    mood_words: str | None = None
    gems: dict | None = None
    warning: str | None = None
    # the 2 Hz timeline's band (merkit.models.curve): the standard deviation of the 10 s
    # windows' P(positive) / P(high) inside the passage this moment belongs to
    valence_band: float | None = None
    arousal_band: float | None = None

    @classmethod
    def no_music(cls, start: float, end: float, looped: bool, reason: str) -> "Prediction":
        return cls(arousal=None, valence=None, quadrant=None, quadrant_word=None, quadrant_probs=None,
                   certainty=None, start=start, end=end, looped=looped, warning=f"not music: {reason}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["quadrant_probs"] is not None:
            d["quadrant_probs"] = list(d["quadrant_probs"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Prediction":
        """The inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if d.get("quadrant_probs") is not None:
            d["quadrant_probs"] = tuple(d["quadrant_probs"])
        return cls(**d)


@dataclass
class FileResult:
    """What ``merkit predict`` reports for one input: the track result and its timeline, or an
    error message (then ``prediction`` is None). ``status``: ``"ok"``, ``"not_music"`` (the
    input was read but holds no music: ``error`` says why; no emotion is given) or ``"error"``."""

    path: str
    prediction: Prediction | None = None
    timeline: list[Prediction] | None = None
    duration: float | None = None
    error: str | None = None
    not_music: bool = False
    note: str | None = None  # e.g. that the timeline covers only the start of a very long file

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "not_music" if self.not_music else "error"

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "status": self.status, "error": self.error,
                "duration": self.duration, "note": self.note,
                "prediction": self.prediction.to_dict() if self.prediction else None,
                "timeline": [p.to_dict() for p in self.timeline] if self.timeline is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> "FileResult":
        """The inverse of :meth:`to_dict`."""
        return cls(path=d["path"], error=d.get("error"), duration=d.get("duration"), note=d.get("note"),
                   not_music=d.get("status") == "not_music",
                   prediction=Prediction.from_dict(d["prediction"]) if d.get("prediction") else None,
                   timeline=[Prediction.from_dict(p) for p in d["timeline"]] if d.get("timeline") is not None else None)


def quadrant_probs(pa: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """(B, 4) quadrant probabilities Q1..Q4 as the products of P(high A) and P(positive V).

    Every model derives its quadrant this way, so that the quadrant, the (valence, arousal)
    point and the plots tell one story: the most likely quadrant is always the one the point
    lies in. (Taking the argmax of a joint 4-class output instead disagreed with its own
    marginals for 22 % of Emotify tracks.)"""
    pa, pv = np.asarray(pa, dtype=np.float64), np.asarray(pv, dtype=np.float64)
    return np.stack([pa * pv, pa * (1 - pv), (1 - pa) * (1 - pv), (1 - pa) * pv], axis=-1)


def combine(probs: dict[str, np.ndarray], reliability: np.ndarray) -> list[dict]:
    """Per-window fields of :class:`Prediction` from each task's ensemble probabilities.

    probs: ``{task: (B, C)}`` with task in ``quadrant`` / ``a`` / ``v``; reliability: ``(B,)``
    (NaN: the networks have no two views to agree, and ``view_agreement`` is None).
    A quadrant network gives the marginals ``P(Q1) + P(Q2)`` and ``P(Q1) + P(Q4)``; a network
    per dimension is averaged with them; the quadrant comes from the marginals
    (:func:`quadrant_probs`).
    """
    b = len(reliability)
    pa = pv = None
    if "quadrant" in probs:
        pq = probs["quadrant"]
        pa, pv = pq @ _HIGH_A, pq @ _POS_V
    if "a" in probs:  # independent estimates of the same marginal: average them
        pa = probs["a"][:, 1] if pa is None else (pa + probs["a"][:, 1]) / 2
    if "v" in probs:
        pv = probs["v"][:, 1] if pv is None else (pv + probs["v"][:, 1]) / 2
    pq = quadrant_probs(pa, pv) if pa is not None and pv is not None else None
    out = []
    for i in range(b):
        q = int(np.argmax(pq[i])) + 1 if pq is not None else None
        if pq is not None:
            certainty = float(pq[i].max())
        else:  # one dimension only: the probability of its more likely side
            m = pa if pa is not None else pv
            certainty = float(max(m[i], 1 - m[i]))
        out.append({
            "arousal": float(pa[i]) if pa is not None else None,
            "valence": float(pv[i]) if pv is not None else None,
            "quadrant": q,
            "quadrant_word": QUADRANT_WORDS[q] if q else None,
            "quadrant_probs": tuple(float(x) for x in pq[i]) if pq is not None else None,
            "certainty": certainty,
            "view_agreement": float(reliability[i]) if np.isfinite(reliability[i]) else None,
        })
    return out


def quadrant_point(p: Prediction) -> tuple[float, float]:
    """Position on the valence-arousal plane, each in [-1, 1]: ``2 P - 1`` of each dimension
    (0 = undecided), or the model's score where it gives no probability (a dynamic model).
    Used by the plots and the web page."""
    def one(prob, score):
        return 2 * prob - 1 if prob is not None else score if score is not None else 0.0

    return one(p.valence, p.valence_score), one(p.arousal, p.arousal_score)


__all__ = ["FileResult", "Prediction", "TASKS", "combine", "quadrant_point", "quadrant_probs"]
