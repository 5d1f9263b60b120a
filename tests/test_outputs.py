"""Never damage a user's file, never lose finished work (merkit.outputs, merkit.stopping; issue 20).

Every command's output is checked before any work: not an input, not a file merkit did not write,
not read-only, not below a regular file, a trailing slash means a folder. SIGTERM / SIGHUP keep
finished rows as Ctrl-C does; a full disk (a real small tmpfs where this machine can mount one,
and an injected ENOSPC everywhere) keeps the previous output, leaves no temporary file and says
so in one line.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import merkit.predict
from conftest import melody
from merkit.cli import main
from merkit.outputs import (OutputError, atomic_path, check_file, check_folder, own_kind, png_metadata,
                            write_text)

SR = 22_050
ROOT = Path(__file__).resolve().parents[1]


def _tiny_model(path):
    from test_predict import save_tiny

    return save_tiny(path)


def _song(path, seconds=8.0, seed=0):
    sf.write(path, melody(seconds, SR, seed=seed), SR)
    return path


def _leftovers(folder) -> list[str]:
    """Temporary files merkit may have left (atomic writes name them .NAME.*.tmp*)."""
    return sorted(p.name for p in Path(folder).rglob("*") if ".tmp" in p.name)


def _checksums(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


# --- recognising merkit's own files ------------------------------------------------------------
def test_own_kind_recognises_merkit_outputs_and_nothing_else(tmp_path):
    from merkit.commands.predict import render
    from merkit.data.manifest import Track, write_manifest
    from merkit.results import FileResult
    from merkit.checkpoint import make_checkpoint, save_checkpoint

    res = [FileResult(path="a.wav", error="x")]
    for fmt in ("csv", "json", "table"):
        write_text(tmp_path / f"p.{fmt}", render(res, fmt))
        assert own_kind(tmp_path / f"p.{fmt}") == "predictions", fmt
    write_manifest([Track("t1", "a.wav")], tmp_path / "tracks.csv")
    assert own_kind(tmp_path / "tracks.csv") == "manifest"
    save_checkpoint(tmp_path / "m.pt", make_checkpoint("damer", {}, {}))
    assert own_kind(tmp_path / "m.pt") == "model"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig(tmp_path / "mine.png", metadata=png_metadata())
    fig.savefig(tmp_path / "theirs.png")  # matplotlib's own PNG, not merkit's
    plt.close(fig)
    assert own_kind(tmp_path / "mine.png") == "figure"
    assert own_kind(tmp_path / "theirs.png") is None

    # an ONNX graph is merkit's when an export's sidecar names it
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07onnx-ish")
    (tmp_path / "other.onnx").write_bytes(b"\x08\x07onnx-ish")
    (tmp_path / "m.onnx.json").write_text(json.dumps({"graphs": {"heads": "m.onnx"}, "versions": {"merkit": "0"}}))
    assert own_kind(tmp_path / "m.onnx") == "onnx" and own_kind(tmp_path / "other.onnx") is None
    assert own_kind(tmp_path / "m.onnx.json") == "export"

    # a user's files: audio, MIDI, text, a CSV of their own, a JSON of their own, a torch file
    _song(tmp_path / "song.wav")
    (tmp_path / "song.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0")
    (tmp_path / "notes.txt").write_text("kind,path,status\nmy notes\n")  # not merkit's header
    (tmp_path / "labels.csv").write_text("path,valence,arousal\na.wav,0.1,0.2\n")
    (tmp_path / "cfg.json").write_text('{"model": "mine"}')
    import torch

    torch.save({"weights": torch.zeros(2)}, tmp_path / "theirs.pt")
    for name in ("song.wav", "song.mid", "notes.txt", "labels.csv", "cfg.json", "theirs.pt"):
        assert own_kind(tmp_path / name) is None, name


# --- the checks --------------------------------------------------------------------------------
def test_check_file_refuses_inputs_user_files_read_only_and_bad_places(tmp_path):
    song = _song(tmp_path / "a.wav")
    (tmp_path / "b.lnk.wav").symlink_to(song)
    with pytest.raises(OutputError, match="is one of the inputs"):
        check_file(song, flag="-o", kind="predictions", inputs=[song])
    with pytest.raises(OutputError, match="is one of the inputs"):  # the same file by another name
        check_file(tmp_path / "b.lnk.wav", flag="-o", kind="predictions", inputs=[song])
    with pytest.raises(OutputError, match="was not written by merkit"):
        check_file(song, flag="-o", kind="predictions", inputs=[])
    with pytest.raises(OutputError, match="was not written by merkit"):
        check_file(song, flag="-o", kind="predictions", force=True)  # --force never reaches a user's file
    with pytest.raises(OutputError, match="is a folder"):
        check_file(f"{tmp_path}/newdir/", flag="-o", kind="predictions")
    assert not (tmp_path / "newdir").exists()
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_file(song / "x.csv", flag="-o", kind="predictions")

    # merkit's own file: the same kind is replaced (a rerun); another kind needs --force
    write_text(tmp_path / "p.csv", "kind,path,status,x\n")
    assert check_file(tmp_path / "p.csv", flag="-o", kind="predictions") == tmp_path / "p.csv"
    with pytest.raises(OutputError, match="pass --force"):
        check_file(tmp_path / "p.csv", flag="-o", kind="manifest")
    check_file(tmp_path / "p.csv", flag="-o", kind="manifest", force=True)
    # read-only: refused even for root, who could write it
    os.chmod(tmp_path / "p.csv", 0o444)
    with pytest.raises(OutputError, match="is read-only"):
        check_file(tmp_path / "p.csv", flag="-o", kind="predictions", force=True)


def test_check_folder_never_writes_over_files_in_a_folder_merkit_did_not_make(tmp_path):
    user = tmp_path / "downloaded_memo2496"
    user.mkdir()
    np.save(user / "mel_spec.npy", np.zeros(3))
    with pytest.raises(OutputError, match="mel_spec.npy exists and was not written by merkit"):
        check_folder(user, flag="-o", writes=["mel_spec.npy", "tracks.csv"])
    check_folder(user, flag="-o", writes=["other.npy"])  # nothing it holds would be replaced
    (user / "features.json").write_text(json.dumps({"views": ["mel", "coch"]}))  # now merkit's
    check_folder(user, flag="-o", writes=["mel_spec.npy"])
    with pytest.raises(OutputError, match="not empty"):
        check_folder(user, flag="--run-dir", empty=True)
    with pytest.raises(OutputError, match="not a folder"):
        check_folder(user / "mel_spec.npy", flag="-o")


def test_atomic_writes_keep_the_old_file_and_leave_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    write_text(target, "old\n")
    os.chmod(target, 0o640)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed half-way")
    assert target.read_text() == "old\n" and _leftovers(tmp_path) == []
    write_text(target, "new\n")
    assert target.read_text() == "new\n" and oct(target.stat().st_mode & 0o777) == oct(0o640)  # mode kept

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=r"out.csv: no space left on device"):
        write_text(target, "newer\n")
    assert target.read_text() == "new\n" and _leftovers(tmp_path) == []


# --- merkit predict through the CLI ------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "music"
    d.mkdir()
    for i in range(3):
        _song(d / f"{i}.wav", seed=i)
    return d


def test_predict_never_overwrites_inputs_or_user_files(tmp_path, folder, monkeypatch, capsys):
    model = _tiny_model(tmp_path / "m.pt")
    before = _checksums(folder)
    calls = []
    monkeypatch.setattr(merkit.predictors.base.Predictor, "analyse_files", lambda self, *a, **k: calls.append(1) or iter(()))
    a, b, c = sorted(folder.glob("*.wav"))
    cases = {
        "input": ["predict", str(a), "-o", str(a)],
        # `merkit predict --format csv -o *.wav`: the shell makes the first match the output
        "shell glob": ["predict", "--format", "csv", "-o", str(a), str(b), str(c)],
        "glob, --force": ["predict", "--format", "csv", "--force", "-o", str(a), str(b), str(c)],
        "trailing slash": ["predict", str(a), "-o", str(tmp_path / "newdir") + "/"],
        "below a file": ["predict", str(a), "-o", str(b / "x.csv")],
    }
    os.chmod(c, 0o444)
    cases["read-only audio"] = ["predict", str(a), "-o", str(c)]
    for name, argv in cases.items():
        assert main([*argv, "--model", str(model)]) == 1, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("merkit predict: error: -o "), (name, err)
    assert not calls  # refused before any work
    assert _checksums(folder) == before and not (tmp_path / "newdir").exists()


def test_predict_replaces_its_own_output_but_not_a_read_only_one(tmp_path, folder, capsys):
    model = _tiny_model(tmp_path / "m.pt")
    out = tmp_path / "p.csv"
    argv = ["predict", str(folder), "--model", str(model), "--format", "csv", "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    first = out.read_bytes()
    assert main(argv) == 0 and out.read_bytes() == first  # a rerun replaces merkit's own file
    os.chmod(out, 0o444)
    assert main(argv) == 1 and "is read-only" in capsys.readouterr().err
    assert out.read_bytes() == first and _leftovers(tmp_path) == []


def test_predict_full_disk_keeps_previous_file_and_prints_the_rows(tmp_path, folder, monkeypatch, capsys):
    model = _tiny_model(tmp_path / "m.pt")
    out = tmp_path / "p.csv"
    assert main(["predict", str(folder / "0.wav"), "--model", str(model), "--format", "csv", "-o", str(out)]) == 0
    previous = out.read_bytes()
    capsys.readouterr()
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    rc = main(["predict", str(folder), "--model", str(model), "--format", "csv", "-o", str(out), "--no-progress"])
    monkeypatch.setattr(os, "fsync", real)
    cap = capsys.readouterr()
    assert rc == 1 and out.read_bytes() == previous and _leftovers(tmp_path) == []
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and "printed to stdout" in err[0], err
    rows = list(csv.DictReader(cap.out.splitlines()))
    assert sorted(Path(r["path"]).name for r in rows) == ["0.wav", "1.wav", "2.wav"]


def _can_mount_tmpfs(d: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    d.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(d)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(d)], capture_output=True)
    return ok


def test_predict_on_a_real_full_file_system(tmp_path, folder):
    """A real 8 kB tmpfs, nearly full (needs root and mount; skipped elsewhere, where the injected
    ENOSPC tests above still run)."""
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here")
    model = _tiny_model(tmp_path / "m.pt")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], check=True)
    try:
        base = [sys.executable, "-m", "merkit", "predict", "--model", str(model), "--format", "csv", "--no-progress"]
        first = subprocess.run([*base, str(folder / "0.wav"), "-o", str(disk / "p.csv")], capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        previous = (disk / "p.csv").read_bytes()
        (disk / "fill").write_bytes(b"\0" * (8192 - 4096))  # one page left: the old file's
        many = [str(folder)] * 1 + [str(p) for p in sorted(folder.glob("*.wav"))] * 3
        r = subprocess.run([*base, *many, "-o", str(disk / "p.csv")], capture_output=True, text=True)
        assert r.returncode == 1 and "no space left on device" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert (disk / "p.csv").read_bytes() == previous and _leftovers(disk) == []
        assert len(list(csv.DictReader(r.stdout.splitlines()))) >= 3
    finally:
        subprocess.run(["umount", str(disk)], check=True)


_SLOW_PREDICT = textwrap.dedent("""
    # merkit predict, each file taking a while and reporting progress in a marker file, so that
    # the test can send its signal from outside, mid-folder, at a known point
    import sys, time
    from pathlib import Path
    import merkit.predictors.base
    real = merkit.predictors.base.Predictor.analyse_files
    def slow(self, paths, **kw):
        for i, res in enumerate(real(self, paths, **kw)):
            yield res
            Path(sys.argv[1]).write_text(str(i + 1))
            time.sleep(0.5)
    merkit.predictors.base.Predictor.analyse_files = slow
    from merkit.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def _files_done(marker) -> int:
    """The slow run's progress count; 0 before its first write (read once: the marker may be
    caught between write_text's truncation and its write)."""
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return 0
    return int(text) if text.strip().isdigit() else 0


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_signal_mid_folder_keeps_every_finished_row(tmp_path, sig):
    model = _tiny_model(tmp_path / "m.pt")
    music = tmp_path / "music"
    music.mkdir()
    for i in range(8):
        _song(music / f"{i}.wav", seconds=4.0, seed=i)
    marker, out = tmp_path / "done", tmp_path / "out.csv"
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_PREDICT)
    p = subprocess.Popen([sys.executable, str(script), str(marker), "predict", str(music), "--model", str(model),
                          "--format", "csv", "-o", str(out), "--no-progress", "--workers", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "tests")
    deadline = time.monotonic() + 120
    while _files_done(marker) < 2:
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    p.send_signal(getattr(signal, sig))
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 128 + getattr(signal, sig), stderr
    rows = list(csv.DictReader(open(out)))
    assert 2 <= len(rows) < 8, rows  # every finished row, and the run did stop
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"stopped by {sig} after {len(rows)} of 8 file(s)" in lines[0], stderr
    assert _leftovers(tmp_path) == []


# --- every other command that writes -----------------------------------------------------------
def test_every_command_checks_its_outputs_before_any_work(tmp_path, capsys, monkeypatch):
    song = _song(tmp_path / "song.wav")
    before = song.read_bytes()
    (tmp_path / "afile").write_text("not a folder")
    user_png = tmp_path / "holiday.png"
    user_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "tracks.csv").write_text("my,own\n")
    (tmp_path / "mine" / "runs").mkdir()
    (tmp_path / "labels.csv").write_text("file,valence,arousal\nsong.wav,1,2\n")
    run = tmp_path / "run" / "seed_0"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"")
    (tmp_path / "run" / "plots" / "seed_0").mkdir(parents=True)
    shutil.copy(user_png, tmp_path / "run" / "plots" / "seed_0" / "training.png")
    ex = tmp_path / "ex.csv"
    ex.write_text(f"path,quadrant\n{song},1\n{song},1\n")
    # nothing below may run: each command must stop at its output check
    import merkit.commands.adapt
    import merkit.commands.extract
    import merkit.data.registry
    import merkit.predict

    for mod, name in ((merkit.predict, "load_model"), (merkit.data.registry, "resolve_input"),
                      (merkit.commands.extract, "resolve_input")):  # where the command calls it
        monkeypatch.setattr(mod, name, lambda *a, **k: pytest.fail(f"work started: {name}"))
    cases = [
        (["export", "-o", str(tmp_path / "afile" / "m.onnx")], "is a file, not a folder"),
        (["export", "-o", str(song)], "was not written by merkit"),
        (["adapt", "--examples", str(ex), "-o", str(tmp_path / "afile" / "m.pt")], "is a file, not a folder"),
        (["adapt", "--examples", str(ex), "-o", str(song)], "is one of the inputs"),
        (["adapt", "--examples", str(ex), "-o", str(ex)], "is one of the inputs"),
        (["extract", str(tmp_path), "-o", str(tmp_path / "mine")], "tracks.csv exists and was not written by merkit"),
        (["extract", str(tmp_path), "-o", str(song)], "exists and is not a folder"),
        (["extract-dynamic", "pmemo", "-o", str(tmp_path / "afile")], "exists and is not a folder"),
        (["medleys", "--from", "emotify", "-o", str(tmp_path / "afile")], "exists and is not a folder"),
        (["datasets", "manifest", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "labels.csv")],
         "is one of the inputs"),
        (["datasets", "manifest", "emotify", "-o", str(song)], "was not written by merkit"),
        (["evaluate", str(run), "--data", "x", "--out", str(song)], "was not written by merkit"),
        (["train", "--data", "synthetic", "--run-dir", str(tmp_path / "afile" / "r")], "is a file, not a folder"),
        (["train", "--model", "unified", "--data", "synthetic", "--run-dir", str(tmp_path / "mine")], "not empty"),
        (["compare", "--data", "synthetic", "--run-dir", str(tmp_path / "afile")], "exists and is not a folder"),
        (["plot", str(tmp_path / "run")], "training.png: exists and was not written by merkit"),
        (["plot", str(tmp_path / "run"), "-o", str(song)], "exists and is not a folder"),
        (["quickstart", "-o", str(tmp_path / "mine")], "runs exists and was not written by merkit"),
        (["predict", str(song), "--timeline", "--plot", str(tmp_path)], None),  # song.wav.png: absent, fine
    ]
    shutil.copy(user_png, tmp_path / "song.wav.png")
    cases[-1] = (cases[-1][0], "song.wav.png: exists and was not written by merkit")
    for argv, why in cases:
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and why in err[0] and "error:" in err[0], (argv, err)
    assert song.read_bytes() == before and user_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "mine" / "tracks.csv").read_text() == "my,own\n" and (tmp_path / "mine" / "runs").is_dir()


def test_extract_on_a_full_disk_keeps_finished_tracks_and_resumes(tmp_path, monkeypatch, capsys):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(6):
        _song(music / f"{i}.wav", seconds=3.0, seed=i)
    out = tmp_path / "feats"
    real, calls = os.pwrite, []

    def fills_up(fd, data, offset):
        calls.append(1)
        if len(calls) > 6:  # the fourth track's rows (mel, coch) no longer fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", fills_up)
    argv = ["extract", str(music), "-o", str(out), "--workers", "0", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and "rerun the same command" in err[0], err
    assert _leftovers(out) == [] and (out / ".partial" / "done.npy").is_file()
    assert int(np.load(out / ".partial" / "done.npy").sum()) == 3 and not (out / "mel_spec.npy").exists()
    monkeypatch.setattr(os, "pwrite", real)
    assert main(argv) == 0
    assert "(3 already done)" in capsys.readouterr().out
    from merkit.data.memo2496 import load_memo2496

    assert len(load_memo2496(out).tracks) == 6 and _leftovers(out) == [] and not (out / ".partial").exists()
