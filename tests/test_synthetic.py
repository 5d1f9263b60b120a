"""The synthetic emotion corpus: determinism, labels from cues, audio that carries the cues,
resumability and the manifest."""
import dataclasses
import json
import os

import numpy as np
import pytest
import soundfile as sf

from merkit.config import ConfigError
from merkit.data import synthetic as syn
from merkit.data.manifest import quadrant_from_va, read_manifest

SR = 16_000
DURATION = 3.0
N = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    return out, syn.generate(out, n_tracks=N, seed=3, duration=DURATION, sample_rate=SR, workers=2,
                             progress=False)


def _read(track):
    y, sr = sf.read(track.path, dtype="float32")
    return y, sr


def _cues(**changes):
    base = dict(mode="major", tonic=0, tempo_bpm=120.0, dynamics_db=0.0, register_midi=69.0,
                articulation=0.65, brightness=0.5, dissonance=0.0)
    return syn.Cues(**{**base, **changes})


# --- determinism -------------------------------------------------------------------------------
def test_worker_count_does_not_change_the_corpus(corpus, tmp_path):
    out, tracks = corpus
    n = 6
    again = syn.generate(tmp_path, n_tracks=n, seed=3, duration=DURATION, sample_rate=SR, workers=1,
                         progress=False)
    for a, b in zip(tracks[:n], again):
        assert (a.label_a, a.label_v, a.quadrant, a.extra) == (b.label_a, b.label_v, b.quadrant, b.extra)
        np.testing.assert_array_equal(_read(a)[0], _read(b)[0])


def test_synthesize_is_a_pure_function_of_seed_and_index():
    y1 = syn.synthesize(5, 2, duration=2.0, sample_rate=SR)
    y2 = syn.synthesize(5, 2, duration=2.0, sample_rate=SR)
    np.testing.assert_array_equal(y1, y2)
    assert syn.draw_labels(5, 2) == syn.draw_labels(5, 2)
    assert not np.array_equal(y1, syn.synthesize(6, 2, duration=2.0, sample_rate=SR))
    assert syn.draw_labels(5, 2) != syn.draw_labels(6, 2)


# --- labels ------------------------------------------------------------------------------------
def _drawn(n=800, seed=0):
    cues = [syn.draw_cues(seed, i) for i in range(n)]
    levels = {k: np.array([c.levels()[k] for c in cues]) for k in cues[0].levels()}
    a, v = np.array([syn.draw_labels(seed, i, c) for i, c in enumerate(cues)]).T
    return cues, levels, a, v


def test_labels_follow_the_cues():
    cues, z, a, v = _drawn()
    assert np.corrcoef(v, z["mode"])[0, 1] > 0.5
    assert np.corrcoef(a, z["tempo"])[0, 1] > 0.5
    # mode and tempo are the strongest cue of their dimension
    for dim, labels, top in (("a", a, "tempo"), ("v", v, "mode")):
        r = {k: abs(np.corrcoef(labels, z[k])[0, 1]) for k in z}
        assert max(r, key=r.get) == top, (dim, r)
    # Least squares on the cue levels recovers the documented weights (noise sd 0.05).
    names = list(z)
    X = np.column_stack([z[k] for k in names])
    for labels, weights in ((a, syn.AROUSAL_WEIGHTS), (v, syn.VALENCE_WEIGHTS)):
        coef, *_ = np.linalg.lstsq(np.column_stack([X, np.ones(len(X))]), labels, rcond=None)
        expected = [weights.get(k, 0.0) for k in names] + [0.0]
        np.testing.assert_allclose(coef, expected, atol=0.02)


def test_labels_are_centred_bounded_and_close_to_the_noise_free_model():
    cues, _, a, v = _drawn()
    assert np.all(np.abs(a) <= 1) and np.all(np.abs(v) <= 1)
    assert abs(np.mean(a)) < 0.05 and abs(np.mean(v)) < 0.05  # valence is bimodal: no median
    clean = np.array([syn.labels_from_cues(c) for c in cues])
    resid = np.concatenate([a - clean[:, 0], v - clean[:, 1]])
    assert abs(resid.std() - syn.LABEL_NOISE_SD) < 0.01
    # the cue levels span [-1, 1] and map back to the same physical values
    c = cues[7]
    back = syn.Cues.from_levels(c.levels(), tonic=c.tonic)
    for f in ("tempo_bpm", "dynamics_db", "register_midi", "articulation", "brightness", "dissonance"):
        assert getattr(back, f) == pytest.approx(getattr(c, f))


def test_quadrants_are_balanced():
    _, _, a, v = _drawn()
    q = np.array([quadrant_from_va(x, y) for x, y in zip(v, a)])
    shares = np.bincount(q, minlength=5)[1:] / len(q)
    assert np.all(np.abs(shares - 0.25) < 0.05), shares
    # each block of four tracks aims at every quadrant once
    for block in range(5):
        assert sorted(syn.target_quadrant(0, 4 * block + k) for k in range(4)) == [1, 2, 3, 4]


# --- audio -------------------------------------------------------------------------------------
def test_audio_files(corpus):
    out, tracks = corpus
    assert len(tracks) == N and len(list((out / "audio").iterdir())) == N
    for t in tracks:
        info = sf.info(t.path)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert info.frames == round(DURATION * SR) and t.duration == DURATION
        y, _ = _read(t)
        assert np.all(np.isfinite(y))
        assert np.max(np.abs(y)) <= syn.PEAK_CEILING + 1e-4  # no clipping
        assert 20 * np.log10(np.sqrt(np.mean(y ** 2))) > -45  # not silent


def test_dynamics_gain_survives_the_reference_normalisation():
    for db in (-6.0, 0.0, 6.0):
        y = syn.render(_cues(dynamics_db=db), np.random.default_rng(0), duration=4.0, sample_rate=SR)
        rms_db = 10 * np.log10(np.mean(y.astype(np.float64) ** 2))
        assert np.max(np.abs(y)) < syn.PEAK_CEILING  # the ceiling did not act
        assert rms_db == pytest.approx(syn.REFERENCE_RMS_DBFS + db, abs=0.01)


def _relative_chroma(y, tonic):
    librosa = pytest.importorskip("librosa")
    c = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=4096, hop_length=2048, tuning=0.0).mean(axis=1)
    return np.roll(c, -tonic)


@pytest.mark.parametrize("tonic", [0, 4, 9])
def test_major_and_minor_differ_in_the_third_scale_degree(tonic):
    for mode, present, absent in (("major", 4, 3), ("minor", 3, 4)):
        # a dull timbre: the 5th harmonic of the tonic is its major third, two octaves up
        cues = _cues(mode=mode, tonic=tonic, brightness=0.0)
        notes = syn.compose(cues, np.random.default_rng(1), 8.0)
        # the score: the mode's third is played, the other mode's third never
        pcs = {round(n.pitch - tonic) % 12 for n in notes}
        assert present in pcs and absent not in pcs
        # the audio: more energy on the mode's third than on the other third
        chroma = _relative_chroma(syn.render(cues, np.random.default_rng(1), duration=8.0, sample_rate=SR,
                                             notes=notes), tonic)
        assert chroma[present] > 1.5 * chroma[absent], (mode, chroma.round(3))


def test_dissonance_adds_tones_but_never_a_third():
    for mode in ("major", "minor"):
        consonant = syn.compose(_cues(mode=mode, dissonance=0.0), np.random.default_rng(2), 8.0)
        dissonant = syn.compose(_cues(mode=mode, dissonance=1.0), np.random.default_rng(2), 8.0)
        chord_pcs = lambda notes: {round(n.pitch) % 12 for n in notes if n.voice == "chord"}
        scale = set(syn.MAJOR_SCALE if mode == "major" else syn.MINOR_SCALE) | {11}  # + leading tone
        assert chord_pcs(consonant) <= scale
        assert chord_pcs(dissonant) - scale  # tones outside the scale
        other_third = 3 if mode == "major" else 4
        assert other_third not in chord_pcs(dissonant)


def test_fast_tempo_has_a_higher_onset_rate():
    librosa = pytest.importorskip("librosa")
    counts = {}
    for bpm in (60.0, 180.0):
        cues = _cues(tempo_bpm=bpm, articulation=0.3, brightness=0.9)
        notes = syn.compose(cues, np.random.default_rng(3), 6.0)
        y = syn.render(cues, np.random.default_rng(3), duration=6.0, sample_rate=SR, notes=notes)
        onsets = librosa.onset.onset_detect(y=y, sr=SR, hop_length=256, units="time")
        counts[bpm] = (len({round(n.onset, 6) for n in notes}), len(onsets))
    (score_slow, audio_slow), (score_fast, audio_fast) = counts[60.0], counts[180.0]
    assert score_fast >= 2.5 * score_slow  # 3x the tempo, same rhythm vocabulary
    assert audio_fast >= 2 * audio_slow, counts


def test_register_moves_the_melody():
    for midi in (57.0, 69.0, 81.0):
        for tonic in syn.TONICS:
            means = [np.mean([n.pitch for n in syn.compose(_cues(register_midi=midi, tonic=tonic),
                                                           np.random.default_rng(r), 8.0)
                              if n.voice == "melody"]) for r in range(8)]
            assert abs(np.mean(means) - midi) < 2.5, (midi, tonic, means)


# --- corpus files ------------------------------------------------------------------------------
def test_manifest_round_trip(corpus):
    out, tracks = corpus
    assert read_manifest(out / "tracks.csv") == tracks
    params = json.loads((out / "synthetic.json").read_text())
    assert (params["seed"], params["duration"], params["sample_rate"], params["n_tracks"]) == (3, DURATION, SR, N)
    for i, t in enumerate(tracks):
        assert t.source == "synthetic" and t.licence == "CC0 (generated)" and t.group == t.track_id
        assert os.path.isabs(t.path) and t.path.endswith(f"audio/syn_{i:04d}.wav")
        cues = syn.cues_from_track(t)
        assert cues == syn.draw_cues(3, i) and t.extra["key"] == cues.key
        a, v = syn.labels_from_cues(cues)
        assert abs(t.label_a - a) < 5 * syn.LABEL_NOISE_SD and abs(t.label_v - v) < 5 * syn.LABEL_NOISE_SD
        assert t.quadrant == quadrant_from_va(t.label_v, t.label_a)
    assert {t.split for t in tracks} == {"train", "val", "test"}
    with pytest.raises(ValueError, match="syn_0000"):
        syn.cues_from_track(dataclasses.replace(tracks[0], extra={}))


def test_splits_are_stratified_and_seeded():
    q = np.repeat([1, 2, 3, 4], [100, 40, 20, 7])
    s = np.array(syn.assign_splits(q, (0.7, 0.15, 0.15), seed=1))
    for quadrant, n in ((1, 100), (2, 40), (3, 20)):
        counts = [np.sum((q == quadrant) & (s == name)) for name in ("train", "val", "test")]
        assert counts == [round(0.7 * n), round(0.85 * n) - round(0.7 * n), n - round(0.85 * n)]
    assert syn.assign_splits(q, seed=1) == s.tolist()
    assert syn.assign_splits(q, seed=2) != s.tolist()
    assert set(syn.assign_splits(q, (1.0, 0.0, 0.0))) == {"train"}


def test_resume_keeps_complete_files_and_renders_only_what_is_missing(tmp_path, monkeypatch):
    kw = dict(seed=1, duration=2.0, sample_rate=SR, workers=1, progress=False)
    first = syn.generate(tmp_path, n_tracks=4, **kw)
    files = sorted((tmp_path / "audio").iterdir()) + [tmp_path / "tracks.csv"]
    mtimes = {f: f.stat().st_mtime_ns for f in files}

    rendered = []
    real = syn._render_to_file
    monkeypatch.setattr(syn, "_render_to_file", lambda *a: rendered.append(a[1]) or real(*a))
    assert syn.generate(tmp_path, n_tracks=4, **kw) == first
    assert rendered == [] and {f: f.stat().st_mtime_ns for f in files} == mtimes

    # a missing and a truncated file are rendered again; a larger corpus adds only its new tracks
    os.remove(first[1].path)
    sf.write(first[2].path, np.zeros(100, dtype=np.float32), SR, subtype="PCM_16")
    more = syn.generate(tmp_path, n_tracks=6, **kw)
    assert [(t.path, t.label_a, t.label_v, t.extra) for t in more[:4]] == \
           [(t.path, t.label_a, t.label_v, t.extra) for t in first]  # splits are redrawn over 6
    assert rendered == [1, 2, 4, 5]
    assert files[0].stat().st_mtime_ns == mtimes[files[0]]
    np.testing.assert_allclose(_read(first[2])[0], syn.synthesize(1, 2, duration=2.0, sample_rate=SR),
                               rtol=0, atol=1.0 / 2 ** 15)  # one 16-bit step

    # other parameters: everything is rendered again and stale files are removed
    rendered.clear()
    other = syn.generate(tmp_path, n_tracks=3, **{**kw, "seed": 2})
    assert rendered == [0, 1, 2] and len(list((tmp_path / "audio").iterdir())) == 3
    assert json.loads((tmp_path / "synthetic.json").read_text())["seed"] == 2
    assert read_manifest(tmp_path / "tracks.csv") == other


@pytest.mark.parametrize("bad", [dict(n_tracks=0), dict(seed=-1), dict(duration=0.5),
                                 dict(duration=float("nan")), dict(sample_rate=4000),
                                 dict(splits=(0.5, 0.5, 0.5)), dict(splits=(0.5, 0.5)), dict(workers=0)])
def test_bad_parameters_raise_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError):
        syn.generate(tmp_path, **bad)
    assert not (tmp_path / "audio").exists()


def test_registry_alias(tmp_path):
    tracks = syn.synthetic_manifest(tmp_path, n_tracks=2, seed=0, duration=1.0, sample_rate=SR,
                                    workers=1, progress=False)
    assert [t.track_id for t in tracks] == ["syn_0000", "syn_0001"]
