"""merkit adapt: a few labelled tracks move the shipped model's V/A toward them; bad example
files are refused with the reason. Personal tasks and one MAML step (merkit.personal)."""
import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import melody
from merkit.cli import main

SR = 22_050


@pytest.mark.slow
def test_adapt_moves_predictions_toward_the_examples(tmp_path, capsys):
    import merkit

    for i in range(4):
        sf.write(tmp_path / f"s{i}.wav", melody(30.0, SR, seed=50 + i), SR)
    base = merkit.load_model()
    before = [base.predict_file(tmp_path / f"s{i}.wav").valence_score for i in range(4)]
    # the listener hears all four as very negative
    (tmp_path / "mine.csv").write_text("path,valence,arousal\n" + "".join(f"s{i}.wav,-0.9,0.2\n" for i in range(4)))
    assert main(["adapt", "--examples", str(tmp_path / "mine.csv"), "-o", str(tmp_path / "me.pt")]) == 0
    assert "adapted on 4 tracks" in capsys.readouterr().out
    me = merkit.load_model(tmp_path / "me.pt")
    after = [me.predict_file(tmp_path / f"s{i}.wav").valence_score for i in range(4)]
    assert np.mean(after) < np.mean(before) - 0.1
    assert me.info["adapted"]["examples"] == 4 and me.check() < 0.02  # self-describing, self-checking


@pytest.mark.parametrize("text, message", [
    ("path,valence,arousal\na.wav,0.5,0.5\n", "at least 3"),
    ("path,valence,arousal\na.wav,0.5,0.5\na.wav,-0.5,0.5\n", "contradictory"),
    ("path,valence,arousal\na.wav,3,0.5\n", "must be in"),
    ("file,label\na.wav,1\n", "needs the columns"),
])
def test_bad_example_files_are_refused(tmp_path, text, message, capsys):
    sf.write(tmp_path / "a.wav", melody(20.0, SR), SR)
    (tmp_path / "mine.csv").write_text(text)
    assert main(["adapt", "--examples", str(tmp_path / "mine.csv"), "-o", str(tmp_path / "me.pt")]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "me.pt").exists()


def test_listener_groups_from_the_real_file(shared_data):
    from merkit.personal import listener_groups

    groups = listener_groups(shared_data / "emotify" / "annotations.csv")
    assert len(groups) >= 20 and all(len(t) >= 40 for t in groups.values())
    name, tracks = next(iter(groups.items()))
    assert name.count("/") == 2 and all(-1 <= v <= 1 and -1 <= a <= 1 for v, a in tracks.values())


def test_one_maml_step_lowers_the_task_loss():
    from merkit.personal import Head, MetaConfig, adapt, fomaml

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(40, 8)).astype(np.float32))
    w = rng.normal(size=(8, 2))
    tasks = []
    for shift in rng.normal(0, 0.5, (6, 2)):  # each task: the same map, its own offset
        y = np.tanh(x.numpy() @ w * 0.3 + shift).astype(np.float32)
        tasks.append((x, torch.from_numpy(y)))
    init = Head(8, hidden=16)
    xs, ys = tasks[0]
    loss = lambda m: float(((m(xs[5:]) - ys[5:]) ** 2).mean().detach())
    adapted = adapt(init, xs[:5], ys[:5], steps=5, lr=0.1)
    assert loss(adapted) < loss(init)  # one adaptation lowers the task's loss
    meta = fomaml(init, tasks, MetaConfig(meta_steps=50, support=5, outer_lr=1e-2))
    assert loss(adapt(meta, xs[:5], ys[:5], steps=5, lr=0.1)) < loss(adapted)
