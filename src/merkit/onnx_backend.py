"""The network part of a predictor as ONNX graphs, run by onnxruntime (``--backend onnx``).

Everything around the networks stays as it is in the torch path: decoding, the window, loudness,
the Mel / cochleagram / musicnn log-Mel front ends (numpy), the tonal summary, the pooling of
musicnn's patches, calibration, the content check and the timeline. Only the calls into torch
modules are swapped for onnxruntime sessions::
    unified model (the shipped one)
      log-Mel patches (B, T, 96) ──<stem>.musicnn.frames.onnx──> mid-end frames (B, 753, T)
      frames (B, 753, T) ──<stem>.musicnn.head.onnx──> penultimate (B, 200), mean_pool, max_pool (B, 753), logits (B, 50)
        numpy: mean / std over a window's patches + tonal summary ──> x (B, 1937)
      x (B, D) ──<stem>.onnx──> va (B, 2), quadrant (B, 4), mirex (B, 5), gems (B, 9)
    DAMER-style networks (EmotionModel, ``merkit train`` checkpoints)
      mel (B, 128, T), coch (B, 84, T) ──<stem>.onnx──> "<task>.<head>" (B, C) for every task and head
        (T: the networks' fixed frame count, 87 for the paper's front end)

The encoder is two graphs, not one, because the timeline runs musicnn's convolutional part once
over the whole track and pools each window's patches from those shared frames
(:meth:`~merkit.encoders.musicnn.MusicnnEncoder.embed_segments`); the track window runs both
graphs on its 3 s patches. Batch is dynamic in every graph, time in the encoder's. ``<stem>.onnx.json`` (the
sidecar) names the graphs and their shapes, the calibration and front end, the torch model the
files came from and a hash of its weights (:func:`weights_key`), so that graphs are never run
with the front end or calibration of another model.

Every export is checked before it is kept: the graphs and torch must give the same head outputs
(and a unified model's calibrated P(positive valence), P(high arousal)) within :data:`TOLERANCE`,
on inputs drawn around the training statistics (the unified heads) and end to end on
:func:`~merkit.reference.reference_signal` (its track window and timeline windows).

Where the graphs come from at predict time (:func:`load_onnx_model`): a `merkit export` file
(``--model model.onnx``: the sidecar names the torch model it needs for the front end and
calibration), or, given a torch model file (or none: the shipped model), its export in
``<cache>/onnx/<weights_key[:16]>/``, made on first use.

Size: just over ~400 lines: the runner, the musicnn stand-in, the graph wrappers and the export
with its check are one contract (what the graphs take and give); each predictor contributes
its own graphs (``onnx_graphs``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from . import __version__
from .config import DEFAULT_MODEL_FILE
from .outputs import own_kind, write_json
from .data.paths import cache_dir

# The largest |onnxruntime - torch| an export may give on any head output or calibrated
# probability. (The shipped model's head is sensitive to one-ulp changes in musicnn's pooled
# features; see Musicnn.head for why its mean pool is taken about the first frame.)
TOLERANCE = 1e-4
# 2: the whole network (encoder graphs + heads, or DAMER-style networks); 1 (no "format" in the
# sidecar): the unified heads alone. Part of every weights_key, so a new layout re-exports.
EXPORT_FORMAT = 2
OPSET = 17
INSTALL_HINT = "pip install 'merkit[onnx]'"
HEADS_GRAPH = "heads"  # the unified model's head network
NETWORKS_GRAPH = "networks"  # an EmotionModel's networks, all tasks in one graph
FRAMES, BACK_END = "frames", "head"  # an encoder's two graphs: "<encoder>.frames", "<encoder>.head"
MUSICNN_OUTPUTS = ("penultimate", "mean_pool", "max_pool", "logits")
# Random network inputs the unified heads are checked on, besides the reference signal.
CHECK_ROWS = 256


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise RuntimeError(f"the ONNX backend needs onnxruntime: {INSTALL_HINT}") from e
    return onnxruntime


def _require_export_tools() -> None:
    _onnxruntime()
    if importlib.util.find_spec("onnx") is None:  # torch.onnx.export writes its protobuf
        raise RuntimeError(f"merkit export needs onnx and onnxruntime: {INSTALL_HINT}")


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


# -- running ---------------------------------------------------------------------------------------
class OnnxGraph:
    """One exported graph in an onnxruntime session: ``graph(name=array, ...)`` → ``{output: array}``.

    The session uses as many threads as torch (``torch.get_num_threads()``), so that the two
    backends are compared on equal terms; sessions are safe to call from several threads at
    once (``Predictor.analyse_files`` analyses timelines in its decoding threads).
    """

    def __init__(self, path: str | os.PathLike):
        ort = _onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        # idle pool threads sleep instead of spinning: they would take the CPU from the decoding
        # threads (measured on 2 shared cores: a folder of 30 s MP3s 1.2x, a 5-minute track 1.5x
        # faster than with spinning)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # no memory arena, no planned buffers: with them the timeline's frames graph (chunks of
        # ~2 200 frames) kept its peak for good: `merkit predict --timeline` of a 10-minute track
        # peaked at 1.61 GB against torch's 1.25 GB; without, 1.27 GB, and a folder of 30 s
        # clips ~5 % slower (0.29 -> 0.31 s per clip)
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: graph missing (written by `merkit export` beside its sidecar)")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for bad graphs
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ValueError(f"{self.path}: not a readable ONNX graph ({type(e).__name__}: {why[:160]}); "
                             "export it again with `merkit export`") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def __repr__(self) -> str:
        return f"OnnxGraph({self.path.name!r}, {self.input_names} -> {self.output_names})"

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        # an input the graph does not use was dropped by the exporter (a Mel-only CNN's coch)
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items() if k in self.input_names}
        return dict(zip(self.output_names, self.session.run(None, feed)))

    def shapes(self) -> dict:
        """``{"inputs": {name: [dim, ...]}, "outputs": ...}``, dynamic dimensions by name."""
        def dims(args):
            return {a.name: [d if isinstance(d, (int, str)) else None for d in a.shape] for a in args}

        return {"inputs": dims(self.session.get_inputs()), "outputs": dims(self.session.get_outputs())}


class OnnxMusicnn:
    """Stands in for the :class:`~merkit.encoders.musicnn.Musicnn` module of a
    :class:`~merkit.encoders.musicnn.MusicnnEncoder`: the same three calls (``frames``, ``head``
    and the forward pass), torch tensors in and out, run by the encoder's two graphs. The
    encoder's own code (patches, batching, chunked frames, segment pooling) is unchanged."""

    def __init__(self, frames: OnnxGraph, head: OnnxGraph, torch_module: nn.Module):
        self._frames, self._head = frames, head
        self.torch_module = torch_module  # restored by Predictor.use_torch()
        self.dims = torch_module.dims

    def __repr__(self) -> str:
        return f"OnnxMusicnn({self._frames.path.name!r}, {self._head.path.name!r})"

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Mid-end frames ``(B, 753, T)`` of log-Mel ``(B, T, 96)``."""
        return torch.from_numpy(self._frames(log_mel=x.numpy())["frames"])

    def head(self, mid: torch.Tensor):
        """:meth:`Musicnn.head`: the back end on frames ``(B, 753, T)``."""
        from .encoders.musicnn import MusicnnOutput

        o = {k: torch.from_numpy(v) for k, v in self._head(frames=mid.numpy()).items()}
        return MusicnnOutput(logits=o["logits"], penultimate=o["penultimate"], mean_pool=o["mean_pool"],
                             max_pool=o["max_pool"], midend=mid.transpose(1, 2))

    def __call__(self, x: torch.Tensor):
        return self.head(self.frames(x))


class OnnxRunner:
    """The graphs of one export, as a predictor calls them (:meth:`Predictor.use_onnx`)."""

    def __init__(self, side: dict, folder: str | os.PathLike):
        self.side = side
        self.kind = side["kind"]
        self.graphs = {name: OnnxGraph(Path(folder) / file) for name, file in side["graphs"].items()}

    def __repr__(self) -> str:
        return f"OnnxRunner({self.kind}, graphs={sorted(self.graphs)})"

    @classmethod
    def open(cls, path: str | os.PathLike, model=None) -> "OnnxRunner":
        """The export ``path`` (a `merkit export` file, its sidecar beside it); with ``model``,
        refused unless it was exported from that model's weights and settings."""
        path = Path(path)
        side = read_sidecar(path)
        if model is not None and side.get("weights_sha256") != weights_key(model):
            raise ValueError(f"{path} was not exported from this model (or the model changed since); "
                             f"export it again: merkit export MODEL -o {path}")
        return cls(side, path.parent)

    @property
    def encoder_names(self) -> tuple[str, ...]:
        return tuple(self.side.get("encoders", {}))

    def heads(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The unified heads of inputs ``(B, D)``: ``{head: (B, C)}`` (float64, as the torch path)."""
        return {k: v.astype(np.float64) for k, v in self.graphs[HEADS_GRAPH](x=x).items()}

    def probabilities(self, mel: np.ndarray, coch: np.ndarray) -> dict[str, dict[str, torch.Tensor]]:
        """``{task: {head: (B, C)}}`` of raw features ``(B, n_mels, T)``, ``(B, n_coch, T)``, as
        ``{task: net.predict_proba(mel, coch)}`` gives them."""
        probs: dict[str, dict[str, torch.Tensor]] = {}
        for key, v in self.graphs[NETWORKS_GRAPH](mel=mel, coch=coch).items():
            task, head = key.split(".", 1)
            probs.setdefault(task, {})[head] = torch.from_numpy(v)
        return probs

    def musicnn(self, name: str, torch_module: nn.Module) -> OnnxMusicnn:
        if name not in self.encoder_names:
            raise ValueError(f"this export holds no graphs of encoder {name!r} (it has {self.encoder_names})")
        return OnnxMusicnn(self.graphs[f"{name}.{FRAMES}"], self.graphs[f"{name}.{BACK_END}"], torch_module)


def read_sidecar(path: str | os.PathLike) -> dict:
    path = Path(path)
    side_file = sidecar_path(path)
    if not side_file.is_file():
        raise FileNotFoundError(f"{side_file}: missing; `merkit export` writes it beside {path.name}")
    side = json.loads(side_file.read_text())
    if side.get("format", 1) != EXPORT_FORMAT:
        raise ValueError(f"{path}: written by another version of `merkit export` (format "
                         f"{side.get('format', 1)}, this merkit reads {EXPORT_FORMAT}); export it again")
    return side


# -- what is exported --------------------------------------------------------------------------
def _modules(model) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every torch network the export covers, in graph order: each
    predictor says which (:meth:`merkit.predictors.base.Predictor.onnx_modules`)."""
    return model.onnx_modules()


def _settings(model) -> dict:
    """Everything besides the weights that the export's outputs and sidecar depend on."""
    d = {"format": EXPORT_FORMAT, "predictor": model.config.to_dict(),
         "calibration": {k: list(v) for k, v in getattr(model, "calibration", {}).items()}}
    for name, m in _modules(model):
        cfg = getattr(m, "cfg", None) or getattr(m, "dims", None)
        d[name] = asdict(cfg) if cfg is not None else None
    return d


def weights_key(model) -> str:
    """sha256 of the exported networks' weights and the model's settings (front end,
    calibration, architecture, export format): what makes an export this model's."""
    h = hashlib.sha256(json.dumps(_settings(model), sort_keys=True, default=str).encode())
    for name, m in _modules(model):
        h.update(name.encode())
        for k, v in m.state_dict().items():
            v = v.detach().cpu().contiguous()
            h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
            h.update(v.numpy().tobytes())
    return h.hexdigest()


class HeadsGraph(nn.Module):
    """x (B, D) → each head's output, in ``heads`` order (UnifiedMER.predict)."""

    def __init__(self, net, heads):
        super().__init__()
        self.net, self.heads = net, heads

    def forward(self, x):
        o = self.net.predict(x)
        return tuple(o[h] for h in self.heads)


class FramesGraph(nn.Module):
    """log-Mel (B, T, 96) → musicnn's mid-end frames (B, 753, T)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.frames(x)


class BackEndGraph(nn.Module):
    """frames (B, 753, T) → :data:`MUSICNN_OUTPUTS` of musicnn's back end."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, mid):
        o = self.m.head(mid)
        return tuple(getattr(o, k) for k in MUSICNN_OUTPUTS)


class NetworksGraph(nn.Module):
    """mel (B, n_mels, T), coch (B, n_coch, T) → every (task, head) probability, ``outputs`` order."""

    def __init__(self, networks: dict, outputs: list[tuple[str, str]]):
        super().__init__()
        self.networks = nn.ModuleDict(networks)
        self.outputs = outputs

    def forward(self, mel, coch):
        p = {t: net.predict_proba(mel, coch) for t, net in self.networks.items()}
        return tuple(p[t][h] for t, h in self.outputs)


@dataclass
class Graph:
    name: str
    module: nn.Module
    example: tuple  # example inputs for tracing (batch 2: no batch-1 special cases get traced)
    inputs: dict[str, dict[int, str]]  # input name -> its dynamic axes
    outputs: dict[str, dict[int, str]]


def _graphs(model) -> tuple[list[Graph], dict]:
    """The graphs to export and the kind-specific part of the sidecar
    (:meth:`merkit.predictors.base.Predictor.onnx_graphs`)."""
    return model.onnx_graphs()


def _export_graph(graph: Graph, path: Path) -> None:
    module = graph.module.eval()  # a wrapper left in train mode would put the networks in train mode after export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, graph.example, str(path), input_names=list(graph.inputs),
                          output_names=list(graph.outputs), dynamic_axes={**graph.inputs, **graph.outputs},
                          opset_version=OPSET, dynamo=False)


def _largest_difference(a: dict, b: dict) -> float:
    return max(float(np.abs(np.asarray(a[k], dtype=np.float64) - np.asarray(b[k], dtype=np.float64)).max())
               for k in a)


def _with_probabilities(model, outputs: dict) -> dict:
    """Head outputs plus, for a unified model, the probabilities its ``va`` scores give through
    the calibration (a slope above 4 would make them move more than the scores)."""
    if "va" not in outputs:
        return outputs
    out = dict(outputs)
    va = np.asarray(outputs["va"], dtype=np.float64)
    for i, d in enumerate(("valence", "arousal")):
        a, b = model.calibration[d]
        out[f"p_{d}"] = 1.0 / (1.0 + np.exp(-(a * va[:, i] + b)))
    return out


def _check(model, runner: OnnxRunner) -> dict[str, float]:
    """Largest |onnx - torch| per check (see the module docstring)."""
    pairs = {}
    if runner.kind == "unified":
        net = model.net
        g = torch.Generator().manual_seed(0)
        x = (net.mean[None] + net.std[None] * torch.randn(CHECK_ROWS, net.cfg.input_dim, generator=g)).float()
        with torch.inference_mode():
            ref = {k: v.numpy() for k, v in net.predict(x).items()}
        pairs["random_head_inputs"] = (ref, runner.heads(x.numpy()))
    # torch (export_model has switched the model to it): the track and timeline windows of
    # reference_signal, then the same through the graphs
    ref = model.reference_probabilities()
    model.use_onnx(runner)
    try:
        pairs["reference_signal"] = (ref, model.reference_probabilities())
    finally:
        model.use_torch()
    return {name: _largest_difference(_with_probabilities(model, a), _with_probabilities(model, b))
            for name, (a, b) in pairs.items()}


def export_model(model, out: str | os.PathLike) -> dict:
    """Write ``out`` and its companion graphs and sidecar (see the module docstring); returns
    the sidecar. Refused (nothing written) when onnxruntime and torch differ by more than
    :data:`TOLERANCE` on any head output."""

    _require_export_tools()
    import onnx
    import onnxruntime

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"-o {out}: the export's name must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = model.onnx
    model.use_torch()  # trace the torch modules, not stand-ins
    try:
        graphs, side = _graphs(model)
        names = {g.name: out.name if g.name in (HEADS_GRAPH, NETWORKS_GRAPH) else f"{out.stem}.{g.name}.onnx"
                 for g in graphs}
        tmp = Path(tempfile.mkdtemp(prefix=".merkit-export-", dir=out.parent))
        try:
            for graph in graphs:
                _export_graph(graph, tmp / names[graph.name])
            draft = {"format": EXPORT_FORMAT, "kind": side["kind"], "graphs": names, "encoders": side.get("encoders", {})}
            runner = OnnxRunner(draft, tmp)
            checks = _check(model, runner)
            worst = max(checks.values())
            if worst > TOLERANCE:
                raise ValueError(f"ONNX outputs differ from torch by {worst:.2e} > {TOLERANCE} "
                                 f"({', '.join(f'{k} {v:.1e}' for k, v in checks.items())}); not exported")
            io = {name: g.shapes() for name, g in runner.graphs.items()}

            for name in names.values():  # never over a file another export (or anyone) did not write
                target = out.parent / name
                if target.exists() and own_kind(target) != "onnx":
                    raise ValueError(f"{target}: exists and was not written by `merkit export`; merkit never "
                                     "overwrites it: export to another name")
            sidecar_path(out).unlink(missing_ok=True)  # an earlier export's sidecar must not vouch for new graphs
            for name in names.values():
                os.replace(tmp / name, out.parent / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        files = model.source_files
        if files and [Path(f).resolve() for f in files] == [DEFAULT_MODEL_FILE.resolve()]:
            source = {"shipped": True}
        else:
            source = {"files": [str(Path(f).resolve()) for f in files]} if files else {}
        side = {"format": EXPORT_FORMAT, **side, "graphs": names, "io": io,
                "predictor": model.config.to_dict(),
                "calibration": {k: list(v) for k, v in getattr(model, "calibration", {}).items()},
                "check": {"tolerance": TOLERANCE, **checks},
                "max_abs_difference_to_torch": worst,
                "weights_sha256": weights_key(model), "source": source,
                "versions": {"merkit": str(__version__), "torch": torch.__version__, "onnx": onnx.__version__,
                             "onnxruntime": onnxruntime.__version__, "opset": OPSET}}

        write_json(sidecar_path(out), side)  # written last: a sidecar means a complete export
        return side
    finally:
        if previous is not None:
            model.use_onnx(previous)


def cached_export(model) -> Path:
    """The export of ``model`` in ``<cache>/onnx/<weights_key[:16]>/model.onnx``, made now if missing."""

    out = cache_dir("onnx") / weights_key(model)[:16] / "model.onnx"
    if sidecar_path(out).is_file():
        try:
            read_sidecar(out)
            return out
        except ValueError:  # another format: export again
            pass
    export_model(model, out)
    return out


__all__ = ["EXPORT_FORMAT", "TOLERANCE", "OnnxGraph", "OnnxMusicnn", "OnnxRunner", "cached_export",
           "export_model", "read_sidecar", "weights_key"]
