"""Convert musicnn's TensorFlow checkpoints into the PyTorch state dicts merkit ships.

    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn     # the wheel holds the checkpoints
    python tools/convert_musicnn.py /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl

No TensorFlow: the checkpoints are read with merkit.encoders.tf_bundle. Writes
src/merkit/assets/musicnn/{MSD,MTT}_musicnn.pt and the wheel's VGG baselines {MSD,MTT}_vgg.pt
(float32; --half for float16) and the licence. tests/test_musicnn.py and
tests/test_musicnn_vgg.py check the result against outputs of the original TF graphs
(tests/data/musicnn_reference.npz and musicnn_vgg_reference.npz, made by
tools/make_musicnn_fixture.py and tools/make_musicnn_vgg_fixture.py).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from merkit.encoders import musicnn_vgg
from merkit.encoders.musicnn import ASSET_DIR, CHECKPOINTS, Musicnn, MusicnnDims, dims_dict
from merkit.encoders.musicnn_vgg import MusicnnVgg, VggDims
from merkit.encoders.tf_bundle import read_bundle

# TF1 layer names, in creation order within build_musicnn, -> the port's module names
_CONVS = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2",
          "midend.0", "midend.1", "midend.2"]
_BNS = ["input_bn", "timbral_bn.0", "timbral_bn.1", "temporal_bn.0", "temporal_bn.1",
        "temporal_bn.2", "midend_bn.0", "midend_bn.1", "midend_bn.2", "pool_bn", "dense_bn"]
_DENSES = ["dense", "out"]


def _tf_name(base: str, i: int) -> str:
    return base if i == 0 else f"{base}_{i}"


def _bn(sd: dict, name: str, bundle: dict, tf: str) -> None:
    sd[f"{name}.weight"] = bundle[f"{tf}/gamma"]
    sd[f"{name}.bias"] = bundle[f"{tf}/beta"]
    sd[f"{name}.running_mean"] = bundle[f"{tf}/moving_mean"]
    sd[f"{name}.running_var"] = bundle[f"{tf}/moving_variance"]


def convert(bundle: dict[str, np.ndarray], model: Musicnn) -> dict[str, torch.Tensor]:
    """Map TF variables onto the port's state dict, checking every shape."""
    sd = {}
    for i, name in enumerate(_CONVS):
        k = bundle[f"{_tf_name('conv2d', i)}/kernel"]  # (kh, kw, in, out)
        if name.startswith("midend"):
            w = k[:, :, 0, :].transpose(2, 1, 0)  # Conv1d over time: (out, in = kw, kh)
        else:
            w = k.transpose(3, 2, 0, 1)  # Conv2d: (out, in, kh, kw)
        sd[f"{name}.weight"] = w
        sd[f"{name}.bias"] = bundle[f"{_tf_name('conv2d', i)}/bias"]
    for i, name in enumerate(_BNS):
        _bn(sd, name, bundle, _tf_name("batch_normalization", i))
    for i, name in enumerate(_DENSES):
        tf = _tf_name("dense", i)
        sd[f"{name}.weight"] = bundle[f"{tf}/kernel"].T  # (in, out) -> (out, in)
        sd[f"{name}.bias"] = bundle[f"{tf}/bias"]
    return _fit(sd, model)


def convert_vgg(bundle: dict[str, np.ndarray], model: MusicnnVgg) -> dict[str, torch.Tensor]:
    """The same for ``models.vgg``: convolutions named 1CNN..5CNN, the input BN first."""
    sd = {}
    _bn(sd, "input_bn", bundle, "batch_normalization")
    for i in range(len(model.convs)):
        sd[f"convs.{i}.weight"] = bundle[f"{i + 1}CNN/kernel"].transpose(3, 2, 0, 1)
        sd[f"convs.{i}.bias"] = bundle[f"{i + 1}CNN/bias"]
        _bn(sd, f"bns.{i}", bundle, f"batch_normalization_{i + 1}")
    # the dense kernel's rows are pool5 flattened as (time, freq, channel): the port flattens so
    sd["out.weight"] = bundle["dense/kernel"].T
    sd["out.bias"] = bundle["dense/bias"]
    return _fit(sd, model)


def _fit(sd: dict[str, np.ndarray], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    target = model.state_dict()
    out = {}
    for key, ref in target.items():
        if key.endswith("num_batches_tracked"):
            out[key] = ref
            continue
        v = torch.from_numpy(np.ascontiguousarray(sd.pop(key), dtype=np.float32))
        if v.shape != ref.shape:
            raise ValueError(f"{key}: TF shape {tuple(v.shape)} != port {tuple(ref.shape)}")
        out[key] = v
    if sd:
        raise ValueError(f"unmapped TF variables: {sorted(sd)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel", help="musicnn-0.1.0-py3-none-any.whl, or an unpacked musicnn/ folder")
    ap.add_argument("--out", default=str(ASSET_DIR))
    ap.add_argument("--half", action="store_true", help="store float16 weights")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.wheel)
        if src.is_file():
            with zipfile.ZipFile(src) as z:
                z.extractall(tmp)
            root = Path(tmp) / "musicnn"
        else:
            root = src
        (out / "LICENSE").write_text((root.parent / "musicnn-0.1.0.dist-info" / "LICENSE.md").read_text()
                                     if (root.parent / "musicnn-0.1.0.dist-info").exists()
                                     else _LICENSE)
        for name in [*CHECKPOINTS, *musicnn_vgg.CHECKPOINTS]:
            folder = root / name
            bundle = {k: v for k, v in read_bundle(folder).items() if "Adam" not in k}
            if name in musicnn_vgg.CHECKPOINTS:
                model = MusicnnVgg(VggDims(pools=musicnn_vgg.POOLS[name]))
                sd = convert_vgg(bundle, model)
            else:
                model = Musicnn(MusicnnDims())
                sd = convert(bundle, model)
            model.load_state_dict(sd)
            n_params = sum(p.numel() for p in model.parameters())
            sha = hashlib.sha256((folder / ".data-00000-of-00001").read_bytes()).hexdigest()
            blob = {"dims": dims_dict(model.dims),
                    "state_dict": {k: v.half() if args.half and v.is_floating_point() else v
                                   for k, v in sd.items()},
                    "source": {"package": "musicnn==0.1.0", "checkpoint": name,
                               "data_sha256": sha, "licence": "ISC (see LICENSE)"}}
            torch.save(blob, out / f"{name}.pt")
            print(f"{name}: {n_params} parameters -> {out / (name + '.pt')}")
    return 0


_LICENSE = """Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. Code developed by Jordi Pons (www.jordipons.me).

Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted, provided that the above copyright notice and this permission notice appear in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
"""

if __name__ == "__main__":
    sys.exit(main())
