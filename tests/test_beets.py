"""The beets plugin (beetsplug.merkit) in a temporary beets library on generated files: `beet
merkit` stores merkit's predictions as flexible attributes that beets queries by range, skips
items that have them, and `auto` analyses on import."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import soundfile as sf

from conftest import melody

pytest.importorskip("beets")
SR = 22_050


def _beet(env, *args):
    r = subprocess.run([sys.executable, "-m", "beets", *args], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.fixture()
def beets_env(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(3):
        sf.write(music / f"song{i}.flac", melody(12.0, SR, seed=i), SR)
    cfg = tmp_path / "beets"
    cfg.mkdir()
    (cfg / "config.yaml").write_text(
        f"directory: {tmp_path / 'lib'}\nlibrary: {tmp_path / 'lib.db'}\nplugins: merkit\n"
        "import:\n  copy: no\n  write: no\n  autotag: no\n  quiet: yes\nmerkit:\n  auto: no\n")
    env = {**os.environ, "BEETSDIR": str(cfg), "MERKIT_CACHE": str(tmp_path / "cache")}
    return env, music, cfg


@pytest.mark.slow
def test_beet_merkit_stores_queryable_attributes(beets_env, tmp_path, capsys):
    from merkit.cli import main

    env, music, cfg = beets_env
    _beet(env, "import", "-A", str(music))
    assert _beet(env, "ls", "-f", "$path").count("song") == 3
    _beet(env, "merkit")
    rows = _beet(env, "ls", "-f", "$path|$quadrant|$arousal|$valence|$mood").strip().splitlines()
    got = {os.path.basename(r.split("|")[0]): r.split("|")[1:] for r in rows}
    assert main(["predict", str(music), "--format", "json", "--no-cache", "--no-progress"]) == 0
    want = {os.path.basename(r["path"]): r["prediction"] for r in json.loads(capsys.readouterr().out)["results"]}
    for name, (q, a, v, mood) in got.items():
        assert int(q) == want[name]["quadrant"] and float(a) == pytest.approx(want[name]["arousal"], abs=0.01)
        assert float(v) == pytest.approx(want[name]["valence"], abs=0.01) and mood == want[name]["mood_words"]
    # range queries on the flexible attributes (typed as numbers by the plugin)
    low = [n for n, (_, a, _, _) in got.items() if float(a) <= 0.5]
    listed = _beet(env, "ls", "-f", "$path", "arousal:..0.5").split()
    assert sorted(os.path.basename(p) for p in listed) == sorted(low)
    q = next(iter(got.values()))[0]
    assert len(_beet(env, "ls", "-f", "$path", f"quadrant:{q}").split()) == sum(v[0] == q for v in got.values())


@pytest.mark.slow
def test_auto_analyses_on_import(beets_env):
    env, music, cfg = beets_env
    (cfg / "config.yaml").write_text((cfg / "config.yaml").read_text().replace("auto: no", "auto: yes"))
    one = music.parent / "one"
    one.mkdir()
    shutil.copy(music / "song0.flac", one / "x.flac")
    _beet(env, "import", "-A", str(one))
    out = _beet(env, "ls", "-f", "$quadrant $arousal", "path:" + str(one / "x.flac")).split()
    assert len(out) == 2 and out[0] in {"1", "2", "3", "4"} and 0.0 <= float(out[1]) <= 1.0
