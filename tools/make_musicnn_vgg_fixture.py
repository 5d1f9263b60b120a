"""Make tests/data/musicnn_vgg_reference.npz: outputs of the ORIGINAL TensorFlow graphs of the
two VGG baselines in the musicnn wheel (MSD_vgg, MTT_vgg).

Run once, in the throwaway environment of tools/make_musicnn_fixture.py (whose graph runner,
test signal and spectrogram this reuses, so both fixtures see the same two patches):

    /tmp/tfvenv/bin/python tools/make_musicnn_vgg_fixture.py /tmp/musicnn/musicnn tests/data/musicnn_vgg_reference.npz

Each graph comes from its checkpoint's .meta file, not from musicnn's models.py: the two differ
for MSD_vgg (see merkit.encoders.musicnn_vgg), and the stored graph is the one the weights
were trained in.
"""
import sys

import librosa
import numpy as np
import tensorflow as tf

from make_musicnn_fixture import log_mel_patches, run_graph, signal

OUTPUTS = {"taggram": "model/Sigmoid", "logits": "model/dense/BiasAdd",
           "pool1": "model/max_pooling2d/MaxPool", "pool3": "model/max_pooling2d_2/MaxPool",
           "pool5": "model/max_pooling2d_4/MaxPool"}


def main(musicnn_dir, out):
    tf.compat.v1.disable_eager_execution()
    x = log_mel_patches(signal())
    arrays = {"x": x, "librosa_version": np.array(librosa.__version__),
              "tensorflow_version": np.array(tf.__version__)}
    for name in ("MSD_vgg", "MTT_vgg"):
        res = run_graph(f"{musicnn_dir}/{name}", x, OUTPUTS)
        # NHWC (patch, time, freq, channel); keep the fixture small: a sample of the early maps
        res["pool1"] = res["pool1"][0, ::8, ::8, ::8]
        res["pool3"] = res["pool3"][0, :, :, ::4]
        for k, v in res.items():
            arrays[f"{name}/{k}"] = v.astype(np.float32)
    np.savez_compressed(out, **arrays)
    print("wrote", out, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
