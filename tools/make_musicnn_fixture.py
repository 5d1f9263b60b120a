"""Make tests/data/musicnn_reference.npz: outputs of musicnn's ORIGINAL TensorFlow graph.

Run once, in a throwaway environment (TensorFlow is never a merkit dependency):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu librosa
    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn && unzip /tmp/musicnn/*.whl -d /tmp/musicnn
    /tmp/tfvenv/bin/python tools/make_musicnn_fixture.py /tmp/musicnn/musicnn tests/data/musicnn_reference.npz

The graph is read from each checkpoint's .meta file (musicnn's models.py fails under Keras 3),
cut down to the inference outputs (the stored training graph's gradient nodes do not import
in current TensorFlow), and its variables are set from the checkpoint with TensorFlow's own
reader, so the reference shares nothing with merkit's bundle reader or port.

The input is a deterministic synthetic signal (chords, a bass line, noise bursts; 16 kHz),
whose log-Mel spectrogram is computed with librosa as musicnn's extractor does, except in
float32 (see merkit.encoders.musicnn), and cut into two 187-frame patches.
"""
import sys

import librosa
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

SR = 16000
OUTPUTS = {"taggram": "model/Sigmoid", "logits": "model/dense_1/BiasAdd",
           "penultimate": "model/dropout_1/cond/Merge", "mean_pool": "model/moments/Squeeze",
           "max_pool": "model/Max", "midend": "model/concat_1"}


def signal(seconds=6.1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    for i, chord in enumerate(chords * 3):
        seg = (t >= i * 0.5) & (t < (i + 1) * 0.5)
        env = np.exp(-3 * (t[seg] - i * 0.5))
        for f in chord:
            y[seg] += 0.2 * env * np.sin(2 * np.pi * f * t[seg]) + 0.05 * env * np.sin(4 * np.pi * f * t[seg])
        y[seg] += 0.3 * env * np.sin(2 * np.pi * chord[0] / 2 * t[seg])
    for onset in np.arange(0.0, seconds, 0.25):
        n = int(0.05 * SR)
        s = int(onset * SR)
        y[s:s + n] += 0.3 * rng.standard_normal(min(n, len(y) - s)) * np.exp(-np.arange(min(n, len(y) - s)) / 200)
    y[int(3.0 * SR):] += 0.05 * rng.standard_normal(len(y) - int(3.0 * SR))  # a noisier second half
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def run_graph(model_dir, x, outputs):
    """``{key: value}`` of the stored graph's tensors ``outputs`` (key -> node name) on ``x``.
    Shared with tools/make_musicnn_vgg_fixture.py."""
    mgd = meta_graph_pb2.MetaGraphDef()
    mgd.ParseFromString(open(f"{model_dir}/.meta", "rb").read())
    gd = tf.compat.v1.graph_util.extract_sub_graph(mgd.graph_def, list(outputs.values()))
    for node in gd.node:
        node.attr.pop("_output_shapes", None)
    reader = tf.compat.v1.train.NewCheckpointReader(f"{model_dir}/")  # the prefix is the folder
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
        variables = [op for op in g.get_operations() if op.type in ("VariableV2", "Variable")]
        assigns = [tf.compat.v1.assign(g.get_tensor_by_name(v.name + ":0"), reader.get_tensor(v.name))
                   for v in variables]
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(assigns)
            feeds = {g.get_tensor_by_name("model/Placeholder:0"): x}
            for op in g.get_operations():  # the is_training flag
                if op.type == "Placeholder" and op.get_attr("dtype") == tf.bool:
                    feeds[op.outputs[0]] = False
            return sess.run({k: g.get_tensor_by_name(v + ":0") for k, v in outputs.items()}, feeds)


def run(model_dir, x):
    res = run_graph(model_dir, x, OUTPUTS)
    res["max_pool"] = res["max_pool"][..., 0]
    res["mean_pool"] = res["mean_pool"].reshape(res["max_pool"].shape)
    res["midend"] = res["midend"][..., 0]
    return res


def log_mel_patches(y):
    """musicnn's input, two 187-frame patches of ``y``."""
    mel = librosa.feature.melspectrogram(y=y, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    spec = np.log10(10000 * mel.astype(np.float32) + 1).astype(np.float32)
    return np.stack([spec[:187], spec[187:374]])


def main(musicnn_dir, out):
    tf.compat.v1.disable_eager_execution()
    y = signal()
    x = log_mel_patches(y)
    arrays = {"audio": y, "x": x, "librosa_version": np.array(librosa.__version__),
              "tensorflow_version": np.array(tf.__version__)}
    for name in ("MSD_musicnn", "MTT_musicnn"):
        for k, v in run(f"{musicnn_dir}/{name}", x).items():
            if k == "midend":  # keep the fixture small: every 8th frame of patch 0
                v = v[0, ::8]
            arrays[f"{name}/{k}"] = v.astype(np.float32)
    np.savez_compressed(out, **arrays)
    print("wrote", out, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
