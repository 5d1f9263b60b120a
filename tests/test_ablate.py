"""The module ablation (Table V): combination names, the table, `merkit ablate` and its resume."""
import json
import math

import numpy as np
import pytest

from merkit.cli import main
from merkit.config import ModelConfig, TrainConfig
from merkit.data.manifest import Track
from merkit.data.memo2496 import FeatureSet, save_memo2496
from merkit.training.ablation import (ALL_COMBOS, TABLE_V_COMBOS, combo_configs, combo_flags, format_ablation,
                                        parse_combo)
from merkit.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY_FLAGS = ["--dim", "16", "--n-heads", "2", "--n-layers", "1", "--fusion-dim", "32", "--batch-size", "32",
              "--lr", "3e-3", "--queue-size", "64", "--epochs", "3", "--no-progress"]


def separable(n=100, n_mels=12, n_coch=10, n_frames=6, seed=0, shift=1.5):
    """Arousal raises the lower Mel bands; everything else is noise; two clips per song."""
    rng = np.random.default_rng(seed)
    a = np.repeat(rng.uniform(-1, 1, n // 2), 2).astype(np.float32)
    v = np.repeat(rng.uniform(-1, 1, n // 2), 2).astype(np.float32)
    mel = rng.normal(size=(n, n_mels, n_frames)).astype(np.float32)
    coch = rng.normal(size=(n, n_coch, n_frames)).astype(np.float32)
    mel[:, : n_mels // 2] += (shift * np.sign(a))[:, None, None]
    tracks = [Track(track_id=f"c{i}", source="synthetic", label_a=float(a[i]), label_v=float(v[i]),
                    group=f"s{i // 2}") for i in range(n)]
    return FeatureSet(mel, coch, a, v, tracks)


def test_table_v_has_the_seven_combinations_with_a_module_on():
    assert len(ALL_COMBOS) == 8 and len(set(ALL_COMBOS)) == 8
    assert TABLE_V_COMBOS[0] == "dsaf+pcl+saml" and len(TABLE_V_COMBOS) == 7 and "none" not in TABLE_V_COMBOS
    assert all(any(combo_flags(c).values()) for c in TABLE_V_COMBOS)
    # rows ordered by the number of modules on: full, the three doubles, the three singles
    assert [sum(combo_flags(c).values()) for c in TABLE_V_COMBOS] == [3, 2, 2, 2, 1, 1, 1]


def test_combination_names_parse_to_one_canonical_form():
    assert parse_combo("SAML+dsaf") == parse_combo("dsaf,saml") == "dsaf+saml"
    assert parse_combo("full") == "dsaf+pcl+saml" and parse_combo("baseline") == "none"
    assert combo_flags("pcl") == {"dsaf": False, "pcl": True, "saml": False}
    for bad in ("dsaf+foo", "", "pcl+pcl"):
        with pytest.raises(ValueError, match="combination"):
            parse_combo(bad)
    m, t = combo_configs("pcl", ModelConfig(), TrainConfig(lr=0.5))
    assert (m.use_dsaf, t.use_pcl, t.use_saml, t.lr) == (False, True, False, 0.5)


def test_format_ablation_known_answer():
    cell = {"mean": 0.8125, "std": 0.0312, "n": 2}
    rows = [{"combo": "dsaf+pcl+saml", "modules": combo_flags("dsaf+pcl+saml"),
             "summary": {"acc": cell, "f1": cell, "auc": {"mean": math.nan, "std": math.nan, "n": 0}}},
            {"combo": "pcl", "modules": combo_flags("pcl"), "summary": {"acc": cell, "f1": cell, "auc": cell}}]
    md = format_ablation(rows, markdown=True).splitlines()
    assert md[0] == "| DSAF | PCL | SAML | ACC | F1 | AUC |"
    assert md[2] == "| ✓ | ✓ | ✓ | 0.8125 ± 0.0312 | 0.8125 ± 0.0312 | n/a |"
    assert md[3].startswith("| ✗ | ✓ | ✗ |")
    text = format_ablation(rows).splitlines()
    assert len(text) == 3 and "0.8125 ± 0.0312" in text[2]


def test_cli_ablate_two_combinations_table_and_resume(tmp_path, capsys):
    data = save_memo2496(separable(), tmp_path / "feats")
    run = tmp_path / "abl"
    argv = ["ablate", "--data", str(data), "--label", "a", "--combos", "full", "pcl", "--seeds", "3",
            "--run-dir", str(run), *TINY_FLAGS]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "DSAF" in printed and "±" in printed
    res = json.loads((run / "results.json").read_text())
    assert res["combos"] == ["dsaf+pcl+saml", "pcl"] and res["seeds"] == [3]
    assert (run / "ablation.md").read_text().count("\n| ") == 3  # header rule + two rows

    # each row is the inference head of that combination's own `merkit train` run
    for row in res["rows"]:
        per_run = json.loads((run / row["combo"] / "results.json").read_text())
        test = per_run["per_seed"][0]["test"][res["inference_head"]]
        assert {m: row["summary"][m]["mean"] for m in ("acc", "f1", "auc")} == test
        ckpt = load_checkpoint(run / row["combo"] / "seed_3" / "best.pt")
        flags = combo_flags(row["combo"])
        mcfg, tcfg = ckpt["model_config"], ckpt["train_config"]
        assert (mcfg["use_dsaf"], tcfg["use_pcl"], tcfg["use_saml"]) == (flags["dsaf"], flags["pcl"], flags["saml"])
        assert mcfg["dim"] == 16 and tcfg["epochs"] == 3  # the shared flags reached it
    # same seed, same split for every combination
    ids = [load_checkpoint(run / c / "seed_3" / "best.pt")["data_info"]["track_ids"] for c in res["combos"]]
    assert ids[0] == ids[1]

    # not again into the same folder
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err

    # a killed ablation: the second combination is gone; resume trains it alone, with the same result
    full_best = run / "dsaf+pcl+saml" / "seed_3" / "best.pt"
    stamp = full_best.stat().st_mtime_ns
    for p in sorted((run / "pcl").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (run / "pcl").rmdir()
    assert main(["ablate", "--resume", str(run), "--no-progress"]) == 0
    assert full_best.stat().st_mtime_ns == stamp  # the finished combination was not rerun
    again = json.loads((run / "results.json").read_text())
    assert again["rows"] == res["rows"] and again["table"] == res["table"]


def test_cli_ablate_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["ablate", "--data", str(tmp_path / "nowhere"), "--label", "a"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err
    assert main(["ablate", "--data", str(tmp_path), "--combos", "dsaf+attention"]) == 1
    assert "dsaf+attention" in capsys.readouterr().err
    assert main(["ablate", "--resume", str(tmp_path)]) == 1
    assert "ablation.json" in capsys.readouterr().err
