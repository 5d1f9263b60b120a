import os
import subprocess
import sys

import pytest
import torch

CHECK = ("from merkit.cpu_memory import reuse_freed_memory as r; "
         "import torch; a = r(); b = r(); x = torch.ones(64 << 20, dtype=torch.uint8); del x; "
         "print(a, b)")


def run(flag: str) -> str:
    env = dict(os.environ, MERKIT_REUSE_FREED_MEMORY=flag)
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_reuse_freed_memory_is_idempotent_and_can_be_switched_off():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert run("1") == ["True", "True"]
    assert run("0") == ["False", "False"]


def test_training_on_the_cpu_turns_reuse_on(monkeypatch):
    from merkit.config import ModelConfig, TrainConfig
    from merkit.models import build_model
    from merkit.training.loop import Trainer

    calls = []
    monkeypatch.setattr("merkit.training.loop.reuse_freed_memory", lambda: calls.append(1) or True)
    model = build_model("damer", ModelConfig(n_mels=8, n_coch=6, n_frames=5, dim=16))
    Trainer(model, TrainConfig(), device=torch.device("cpu"), n_classes=2)
    assert calls == [1]
