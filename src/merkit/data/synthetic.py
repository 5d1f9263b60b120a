"""A synthetic emotion corpus: merkit's built-in default data, generated with no download.

Each track is a short piece (melody, chords and bass in one synthetic instrument) whose cue
levels are drawn at random, and whose arousal/valence labels are computed *from those cues* with
a fixed linear model. The cues are the primary musical cues of Eerola, Friberg & Bresin (2013),
"Emotional expression in music: contribution, linearity, and additivity of primary musical cues",
Frontiers in Psychology 4:487:
==============  ==========================================  ====================================
cue             how it is rendered                          level in [-1, 1] (:meth:`Cues.levels`)
==============  ==========================================  ====================================
mode            major or natural minor scale and chords     +1 major, -1 minor
dissonance      minor-ninth / tritone tones added to chords 0 consonant .. 1 dissonant
tempo           beats per minute, i.e. the note rate        60 .. 180 BPM, log scale
dynamics        level after a fixed reference level; loud   -6 .. +6 dB
                pieces are also brighter and more accented
register        the melody's central pitch                  MIDI 57 .. 81 (A3 .. A5)
articulation    sounding fraction of each inter-onset gap   1.0 legato .. 0.3 staccato
brightness      spectral tilt of the harmonics and attack   0 dull, soft attack .. 1 bright, sharp
==============  ==========================================  ====================================

Keys are C, E or Ab (see :data:`TONICS` for why not all twelve); the melody is a scale-degree
random walk over a four-chord progression with a bass line, all in one additive (wavetable)
instrument with attack/decay envelopes and an onset noise burst.

The labels (:func:`labels_from_cues`) follow the paper's qualitative findings: mode dominates
valence and tempo dominates arousal; register, dynamics, articulation and timbre contribute less.
The weights are this module's own choice (the paper's regression coefficients are for its own
stimuli and rating scales), listed in :data:`AROUSAL_WEIGHTS` and :data:`VALENCE_WEIGHTS`; each
set sums to 1 in absolute value, so labels lie in [-1, 1], centred at 0 like Memo2496's. A little
Gaussian noise stands in for listener disagreement.

**This is a demo and smoke-test corpus, not a claim about real music.** The labels are true by
construction: they say what a listener *would* feel if the cue model held exactly. The corpus
checks that a pipeline can learn cue-driven emotion from a Mel spectrogram and a gammatone
cochleagram of loudness-normalised audio; a model's score on it says nothing about its score on
human-annotated recordings.

Reproducibility: every random draw comes from a ``numpy.random.Generator`` seeded by
``SeedSequence(seed, spawn_key=(stream, index))``, so track ``i`` (audio, cues, labels) is the
same whatever the worker count and whatever ``n_tracks``: a larger corpus extends a smaller one
(only the split, drawn over the whole corpus, may differ).

Size: one module over ~400 lines on purpose: the cue model, the synthesiser and the labels it
implies are one definition of the corpus; splitting them would let the labels drift from the
audio that is supposed to carry them.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..config import ConfigError
from .manifest import Track, quadrant_from_va, read_manifest, write_manifest
from ..outputs import write_text

SOURCE = "synthetic"
LICENCE = "CC0 (generated)"
GENERATOR_VERSION = 1  # bump whenever a change alters the audio or labels of a given seed
PARAMS_FILE = "synthetic.json"
AUDIO_DIR = "audio"
MANIFEST_FILE = "tracks.csv"
SPLIT_NAMES = ("train", "val", "test")
# merkit's front end rejects audio shorter than AudioConfig.min_seconds (1 s).
MIN_DURATION_S = 1.0
# 8 kHz (telephone band) still carries the 3rd harmonic of the highest melody notes (~1.1 kHz).
MIN_SAMPLE_RATE = 8_000

# --- Cue ranges ---------------------------------------------------------------------------------
# Roughly adagio to presto on a metronome; tempo is perceived on a ratio scale, hence log.
TEMPO_RANGE_BPM = (60.0, 180.0)
# Modest on purpose: the front end normalises every track to -23 LUFS, so the level itself is
# mostly lost and dynamics act through brightness and accent contrast (as in real instruments).
DYNAMICS_RANGE_DB = 6.0
# Two octaves around A4, a typical melody range.
REGISTER_CENTRE_MIDI = 69.0
REGISTER_HALF_SPAN = 12.0
# Sounding fraction of the inter-onset interval: 1.0 = notes joined, 0.3 = short detached notes.
ARTICULATION_LEGATO = 1.0
ARTICULATION_STACCATO = 0.3

# --- Label model: weights on the cue levels in [-1, 1] (sign = direction of effect) ------------
# Ordered after Eerola et al. (2013): tempo, then dynamics, drive arousal; articulation (staccato)
# and timbre (brightness) add to it; dissonance adds tension.
AROUSAL_WEIGHTS = {"tempo": 0.40, "dynamics": 0.20, "articulation": 0.15, "brightness": 0.15,
                   "register": 0.05, "dissonance": 0.05}
# Mode dominates valence; dissonance lowers it; high register and fast tempo raise it a little;
# loud dynamics lower it slightly (loudness reads as anger/threat).
VALENCE_WEIGHTS = {"mode": 0.50, "dissonance": -0.20, "register": 0.15, "tempo": 0.10,
                   "dynamics": -0.05}
# Listener disagreement, small next to the label spread (standard deviation 0.37 for arousal,
# 0.61 for the bimodal valence, over 2000 tracks of seed 0).
LABEL_NOISE_SD = 0.05

# --- Drawing cues so that the four quadrants are balanced ---------------------------------------
# Each block of 4 consecutive tracks gets one target quadrant apiece (in a seeded order). Every
# cue level is then uniform on [s * LEAN - SPREAD, s * LEAN + SPREAD] (= [-0.3, 1] for s = +1),
# s being the sign, in the target quadrant, of the dimension the cue weighs most on: cues still
# vary over their whole range and overlap between quadrants, but the labels land in the target
# quadrant most of the time.
QUADRANTS_PER_BLOCK = 4
CUE_LEAN = 0.35
CUE_SPREAD = 1.0 - CUE_LEAN
MODE_AGREEMENT = 0.85  # P(major | positive-valence target) = P(minor | negative-valence target)

# --- Composition ------------------------------------------------------------------------------
# Keys: C, E and Ab, a major third apart. Relative keys (a minor third apart, e.g. C major and
# A minor) share all their notes, so with all twelve keys a piece's mode is only in *which* note is
# the tonic, which a few hundred tracks cannot teach a model. With these three, no major key has
# the notes of a minor one and the pitch content tells the mode. Measured on the default corpus
# (240 tracks, seed 0; 5-fold logistic regression on the mean and std over time of a log-Mel
# spectrogram and a semitone filterbank, after -23 LUFS normalisation), valence accuracy:
# 0.66 with all 12 keys, 0.87 with these 3, 1.00 with C only (arousal 0.95-0.97 in all three).
TONICS = (0, 4, 8)
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; chord V borrows the raised 7th (harmonic)
# Four-chord progressions as 0-based scale degrees, one chord per bar, cycled.
MAJOR_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (0, 3, 0, 4), (5, 3, 0, 4),
                      (0, 1, 4, 0))
MINOR_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 2, 6), (0, 3, 6, 2), (0, 5, 3, 4), (0, 6, 5, 4),
                      (0, 3, 0, 4))
BEATS_PER_BAR = 4
# Semitones above a chord's root added by dissonance: minor ninth (a semitone cluster), tritone.
DISSONANT_INTERVALS = (1, 6)
# Added tones never land on scale step 3 (minor third) or 4 (major third) above the tonic, so the
# mode stays unambiguous in the pitch content.
THIRD_DEGREE_PCS = (3, 4)
ACCOMP_OFFSET = -12.0  # chords an octave below the melody centre
BASS_OFFSET = -24.0  # bass two octaves below
BASS_MIN_MIDI = 33  # A1, 55 Hz: lower bass notes would be mostly below the Mel/gammatone range
MELODY_RANGE_DEGREES = 4  # the melody walks within +-4 scale steps of its centre
# Scale-degree random walk: step sizes and their probabilities (stepwise motion dominates melodies).
MELODY_STEPS = (-3, -2, -1, 0, 1, 2, 3)
MELODY_STEP_P = (0.05, 0.15, 0.27, 0.06, 0.27, 0.15, 0.05)
# Melodies regress towards the middle of their range (Huron 2006, "Sweet Anticipation": melodic
# regression): a step away from the centre is turned back towards it with this probability.
CENTRE_PULL = 0.3
P_HALF_NOTE = 0.15  # a melody note lasting two beats, on beats 1 or 3
P_EIGHTHS = 0.45  # a beat split into two eighth notes
ACCOMP_PATTERNS = ("beats", "halves", "arpeggio")  # chords struck per beat, per half bar, broken

# --- Sound --------------------------------------------------------------------------------------
VOICE_GAIN_DB = {"melody": 0.0, "chord": -9.0, "bass": -4.0}
ACCENT_DB_MAX = 6.0  # accent on beat 1 of a bar at full dynamics (beat 3 gets half)
HUMANISE_DB = 1.0  # note-to-note level jitter of a human player
TILT_DULL = 3.0  # harmonic amplitudes k**-3: nearly a sine (flute-like)
TILT_BRIGHT = 1.0  # k**-1: sawtooth-like (brass, bowed strings)
TRANSIENT_TILT_DROP = 0.8  # the onset is brighter than the body: high partials decay faster
TRANSIENT_TILT_MIN = 0.5  # no brighter than this (k**-0.5) even for the brightest, loudest notes
TRANSIENT_DECAY_S = 0.12
LOUD_BRIGHTENING = 0.35  # share of the effective brightness that comes from the dynamics cue
EVEN_HARMONIC_WEIGHT = (0.2, 1.0)  # instrument variety unrelated to emotion (clarinet .. string)
ATTACK_SOFT_S = 0.08
ATTACK_SHARP_S = 0.002
DECAY_S = 0.5  # amplitude decays from the attack peak towards SUSTAIN_LEVEL
SUSTAIN_LEVEL = 0.5
RELEASE_RANGE_S = (0.02, 0.12)  # staccato .. legato
NOISE_BURST_S = 0.02  # hammer/breath noise at each onset, scaled by accent and brightness
NOISE_BURST_DECAY_S = 0.004
NOISE_BURST_GAIN = 0.25
FADE_OUT_S = 0.05  # the piece is cut at `duration`; a short fade avoids a click
WAVETABLE_SIZE = 4096
MAX_HARMONICS = 256
NYQUIST_GUARD = 0.9  # partials stay below 0.9 x Nyquist: no aliasing from the table read
# Fixed reference level before the dynamics gain: the crest factors of these pieces reach about
# 21 dB (measured on seed 0), so -28 dBFS + 6 dB of dynamics peaks near -1 dBFS. The ceiling
# scales down, rather than clips, the rare piece above it.
REFERENCE_RMS_DBFS = -28.0
PEAK_CEILING = 10 ** (-1.0 / 20)  # -1 dBFS

# Independent random streams per track (SeedSequence spawn keys).
_STREAM_CUES, _STREAM_NOISE, _STREAM_SCORE, _STREAM_SOUND, _STREAM_BALANCE, _STREAM_SPLIT = range(6)
_PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_AUDIO_RE = re.compile(r"syn_\d{4,}\.wav")
_TMP_RE = re.compile(r"syn_\d{4,}\.wav\.\d+\.tmp")


@dataclass(frozen=True)
class Cues:
    """The cue levels of one track, in physical units (the manifest's ``extra`` holds them)."""

    mode: str  # "major" | "minor"
    tonic: int  # pitch class of the key, 0 = C
    tempo_bpm: float
    dynamics_db: float  # gain after the reference level
    register_midi: float  # centre of the melody
    articulation: float  # sounding fraction of each inter-onset interval
    brightness: float  # 0 .. 1
    dissonance: float  # 0 .. 1, probability that a chord carries each dissonant added tone

    def levels(self) -> dict[str, float]:
        """Each cue mapped to [-1, 1], the sign giving the direction of higher arousal/valence."""
        lo, hi = TEMPO_RANGE_BPM
        return {
            "mode": 1.0 if self.mode == "major" else -1.0,
            "tempo": math.log(self.tempo_bpm / math.sqrt(lo * hi)) / math.log(math.sqrt(hi / lo)),
            "dynamics": self.dynamics_db / DYNAMICS_RANGE_DB,
            "register": (self.register_midi - REGISTER_CENTRE_MIDI) / REGISTER_HALF_SPAN,
            # staccato = +1 (arousing), legato = -1
            "articulation": (2 * self.articulation - ARTICULATION_LEGATO - ARTICULATION_STACCATO)
                            / (ARTICULATION_STACCATO - ARTICULATION_LEGATO),
            "brightness": 2 * self.brightness - 1,
            "dissonance": 2 * self.dissonance - 1,
        }

    @classmethod
    def from_levels(cls, levels: dict[str, float], *, tonic: int) -> "Cues":
        """Inverse of :meth:`levels` (``mode``: > 0 means major)."""
        lo, hi = TEMPO_RANGE_BPM
        return cls(
            mode="major" if levels["mode"] > 0 else "minor",
            tonic=int(tonic),
            tempo_bpm=math.sqrt(lo * hi) * math.sqrt(hi / lo) ** levels["tempo"],
            dynamics_db=DYNAMICS_RANGE_DB * levels["dynamics"],
            register_midi=REGISTER_CENTRE_MIDI + REGISTER_HALF_SPAN * levels["register"],
            articulation=(ARTICULATION_LEGATO + ARTICULATION_STACCATO
                          + levels["articulation"] * (ARTICULATION_STACCATO - ARTICULATION_LEGATO)) / 2,
            brightness=(levels["brightness"] + 1) / 2,
            dissonance=(levels["dissonance"] + 1) / 2,
        )

    @property
    def key(self) -> str:
        return f"{_PITCH_NAMES[self.tonic]} {self.mode}"


def labels_from_cues(cues: Cues) -> tuple[float, float]:
    """Noise-free ``(arousal, valence)`` of a track: the weighted sum of its cue levels, in [-1, 1]."""
    z = cues.levels()
    arousal = sum(w * z[k] for k, w in AROUSAL_WEIGHTS.items())
    valence = sum(w * z[k] for k, w in VALENCE_WEIGHTS.items())
    return float(arousal), float(valence)


def _rng(seed: int, stream: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, *key)))


def target_quadrant(seed: int, index: int) -> int:
    """The quadrant track ``index`` is drawn towards: each block of 4 tracks covers Q1..Q4 once."""
    block, pos = divmod(index, QUADRANTS_PER_BLOCK)
    return int(_rng(seed, _STREAM_BALANCE, block).permutation(QUADRANTS_PER_BLOCK)[pos]) + 1


def draw_cues(seed: int, index: int) -> Cues:
    """The cue levels of track ``index`` of the corpus with this ``seed`` (deterministic)."""
    q = target_quadrant(seed, index)
    s_a = 1.0 if q in (1, 2) else -1.0
    s_v = 1.0 if q in (1, 4) else -1.0
    rng = _rng(seed, _STREAM_CUES, index)
    # A cue leans towards the dimension it weighs most on (dissonance: valence, where it is -0.2).
    sign = {"tempo": s_a, "dynamics": s_a, "articulation": s_a, "brightness": s_a,
            "register": s_v, "dissonance": -s_v}
    levels = {k: s * CUE_LEAN + rng.uniform(-CUE_SPREAD, CUE_SPREAD) for k, s in sign.items()}
    major = (rng.random() < MODE_AGREEMENT) == (s_v > 0)
    levels["mode"] = 1.0 if major else -1.0
    return Cues.from_levels(levels, tonic=TONICS[int(rng.integers(len(TONICS)))])


def draw_labels(seed: int, index: int, cues: Cues | None = None) -> tuple[float, float]:
    """``(arousal, valence)`` of track ``index``: :func:`labels_from_cues` plus rater noise."""
    cues = draw_cues(seed, index) if cues is None else cues
    noise = _rng(seed, _STREAM_NOISE, index).normal(0.0, LABEL_NOISE_SD, size=2)
    a, v = labels_from_cues(cues)
    return float(np.clip(a + noise[0], -1, 1)), float(np.clip(v + noise[1], -1, 1))


# --- Composition ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Note:
    onset: float  # seconds
    length: float  # sounding seconds, before the release
    pitch: float  # MIDI number
    gain_db: float
    transient: float  # 0..1: strength of the bright onset and noise burst (accent, dynamics)
    voice: str  # "melody" | "chord" | "bass"


def _scale(cues: Cues) -> tuple[int, ...]:
    return MAJOR_SCALE if cues.mode == "major" else MINOR_SCALE


def _degree_semitones(degree: int, scale: tuple[int, ...]) -> int:
    octave, step = divmod(degree, len(scale))
    return 12 * octave + scale[step]


def _chord_pcs(root_degree: int, cues: Cues, rng: np.random.Generator) -> list[int]:
    """Pitch classes (relative to the tonic) of the triad on ``root_degree``, plus dissonance."""
    scale = _scale(cues)
    pcs = [_degree_semitones(root_degree + k, scale) % 12 for k in (0, 2, 4)]
    if cues.mode == "minor" and root_degree % 7 == 4:
        pcs[1] = (pcs[1] + 1) % 12  # dominant chord of harmonic minor: the leading tone
    for interval in DISSONANT_INTERVALS:
        pc = (pcs[0] + interval) % 12
        if rng.random() < cues.dissonance and pc not in THIRD_DEGREE_PCS:
            pcs.append(pc)
    return pcs


def _nearest_pitch(pc: int, target: float) -> int:
    """The MIDI pitch of pitch class ``pc`` nearest to ``target``."""
    base = pc + 12 * math.floor((target - pc) / 12)
    return base if target - base <= 6 else base + 12


def compose(cues: Cues, rng: np.random.Generator, duration: float) -> list[Note]:
    """A melody (scale-degree random walk), a chord progression and a bass line.

    One chord per 4/4 bar; the melody's strong beats sit on chord tones and it ends on the tonic.
    Notes that start after ``duration`` are dropped.
    """
    scale = _scale(cues)
    beat = 60.0 / cues.tempo_bpm
    n_bars = math.ceil(duration / (BEATS_PER_BAR * beat))
    progs = MAJOR_PROGRESSIONS if cues.mode == "major" else MINOR_PROGRESSIONS
    prog = progs[int(rng.integers(len(progs)))]
    pattern = ACCOMP_PATTERNS[int(rng.integers(len(ACCOMP_PATTERNS)))]
    loud = (cues.dynamics_db / DYNAMICS_RANGE_DB + 1) / 2
    accent_db = ACCENT_DB_MAX * (0.25 + 0.75 * loud)  # loud playing accents more
    tonic_ref = _nearest_pitch(cues.tonic, cues.register_midi)
    # The scale degree nearest the register cue is the melody's centre.
    degrees = np.arange(-7, 8)
    centre = int(degrees[np.argmin([abs(tonic_ref + _degree_semitones(int(d), scale) - cues.register_midi)
                                    for d in degrees])])
    lo, hi = centre - MELODY_RANGE_DEGREES, centre + MELODY_RANGE_DEGREES
    notes: list[Note] = []

    def add(onset, ioi, pitch, voice, accent):
        if onset < duration:
            gain = VOICE_GAIN_DB[voice] + accent * accent_db + rng.normal(0.0, HUMANISE_DB)
            notes.append(Note(onset, ioi * cues.articulation, float(pitch), float(gain),
                              float((0.2 + 0.8 * loud) * (0.5 + 0.5 * accent)), voice))

    def accent_of(beat_in_bar: float) -> float:
        return 1.0 if beat_in_bar == 0 else 0.5 if beat_in_bar == 2 else 0.0

    degree = centre
    for bar in range(n_bars):
        t_bar = bar * BEATS_PER_BAR * beat
        root = prog[bar % len(prog)]
        pcs = _chord_pcs(root, cues, rng)
        chord = sorted(_nearest_pitch((cues.tonic + pc) % 12, cues.register_midi + ACCOMP_OFFSET)
                       for pc in pcs)
        bass = _nearest_pitch((cues.tonic + pcs[0]) % 12, cues.register_midi + BASS_OFFSET)
        while bass < BASS_MIN_MIDI:
            bass += 12
        # accompaniment
        if pattern == "arpeggio":
            for k in range(2 * BEATS_PER_BAR):
                add(t_bar + k * beat / 2, beat / 2, chord[k % len(chord)], "chord", accent_of(k / 2))
        else:
            step = 1 if pattern == "beats" else 2
            for b in range(0, BEATS_PER_BAR, step):
                for p in chord:
                    add(t_bar + b * beat, step * beat, p, "chord", accent_of(b))
        add(t_bar, 2 * beat, bass, "bass", 1.0)
        add(t_bar + 2 * beat, 2 * beat, bass, "bass", 0.5)
        # melody
        chord_degrees = [root + k for k in (0, 2, 4)]
        last_bar = bar == n_bars - 1
        b = 0
        while b < BEATS_PER_BAR:
            if b == 0:  # strong beat: move to the nearest chord tone (any octave)
                cands = [d + 7 * o for d in chord_degrees for o in (-2, -1, 0, 1)]
                cands = [d for d in cands if lo <= d <= hi] or [centre]
                degree = min(cands, key=lambda d: (abs(d - degree), d))
            else:
                step_ = int(rng.choice(MELODY_STEPS, p=MELODY_STEP_P))
                if step_ * (degree - centre) > 0 and rng.random() < CENTRE_PULL:
                    step_ = -step_
                degree = degree + step_
                if degree < lo or degree > hi:  # reflect at the range edges
                    degree -= 2 * step_
                degree = min(max(degree, lo), hi)
            if last_bar and b == 2:  # cadence: the tonic nearest the centre, to the end
                degree = 7 * round(centre / 7)
                add(t_bar + b * beat, 2 * beat, tonic_ref + _degree_semitones(degree, scale),
                    "melody", 0.5)
                break
            pitch = tonic_ref + _degree_semitones(degree, scale)
            if b in (0, 2) and rng.random() < P_HALF_NOTE:
                add(t_bar + b * beat, 2 * beat, pitch, "melody", accent_of(b))
                b += 2
            elif rng.random() < P_EIGHTHS:
                add(t_bar + b * beat, beat / 2, pitch, "melody", accent_of(b))
                nxt = min(max(degree + int(rng.choice((-1, 1))), lo), hi)
                add(t_bar + (b + 0.5) * beat, beat / 2, tonic_ref + _degree_semitones(nxt, scale),
                    "melody", 0.0)
                degree = nxt
                b += 1
            else:
                add(t_bar + b * beat, beat, pitch, "melody", accent_of(b))
                b += 1
    return notes


# --- Synthesis ----------------------------------------------------------------------------------
def _wavetable(f0: float, tilt: float, even_weight: float, phases: np.ndarray, sample_rate: int) -> np.ndarray:
    """One period of a harmonic tone (partials k**-tilt, band-limited), plus a wrap-around sample."""
    k = np.arange(1, MAX_HARMONICS + 1)
    amp = k ** -tilt * np.where(k % 2 == 0, even_weight, 1.0)
    amp[k * f0 > NYQUIST_GUARD * sample_rate / 2] = 0.0
    spec = np.zeros(WAVETABLE_SIZE // 2 + 1, dtype=np.complex128)
    spec[1:MAX_HARMONICS + 1] = amp * np.exp(1j * phases) * (WAVETABLE_SIZE / 2)
    table = np.fft.irfft(spec, n=WAVETABLE_SIZE)
    return np.append(table, table[0])


def _tones(tables: list[np.ndarray], f0: float, n: int, sample_rate: int) -> list[np.ndarray]:
    """``n`` samples of each periodic tone in ``tables``, read at the same phases with linear
    interpolation (the read positions are computed once)."""
    pos = (np.arange(n) * (f0 / sample_rate)) % 1.0 * WAVETABLE_SIZE
    i = pos.astype(np.int64)
    frac = pos - i
    return [tab[i] + frac * (tab[i + 1] - tab[i]) for tab in tables]


def render(cues: Cues, rng: np.random.Generator, *, duration: float, sample_rate: int,
           notes: list[Note] | None = None) -> np.ndarray:
    """Synthesise a track: ``(round(duration * sample_rate),)`` float32 mono in [-1, 1].

    ``notes`` defaults to :func:`compose` with ``rng``; the instrument's random parts (partial
    phases, onset noise) are drawn from ``rng`` after that.
    """
    if notes is None:
        notes = compose(cues, rng, duration)
    n_out = int(round(duration * sample_rate))
    loud = (cues.dynamics_db / DYNAMICS_RANGE_DB + 1) / 2
    bright = (1 - LOUD_BRIGHTENING) * cues.brightness + LOUD_BRIGHTENING * loud
    tilt = TILT_DULL + (TILT_BRIGHT - TILT_DULL) * bright
    even = rng.uniform(*EVEN_HARMONIC_WEIGHT)
    phases = rng.uniform(0, 2 * np.pi, MAX_HARMONICS)  # random phases: a lower crest factor
    attack = ATTACK_SOFT_S * (ATTACK_SHARP_S / ATTACK_SOFT_S) ** bright
    legato = (cues.articulation - ARTICULATION_STACCATO) / (ARTICULATION_LEGATO - ARTICULATION_STACCATO)
    release = RELEASE_RANGE_S[0] + (RELEASE_RANGE_S[1] - RELEASE_RANGE_S[0]) * legato
    n_burst = int(round(NOISE_BURST_S * sample_rate))
    # high-passed (first difference) white noise with a fast decay: a hammer/breath click
    burst = np.diff(rng.standard_normal(n_burst + 1)) * np.exp(-np.arange(n_burst) / (NOISE_BURST_DECAY_S * sample_rate))
    burst *= NOISE_BURST_GAIN * bright / np.sqrt(np.mean(burst ** 2))

    n_release = int(round(release * sample_rate))
    ramp = np.linspace(1.0, 0.0, n_release + 1)[1:]
    # (start, sounding samples, total samples with the release cut at the end of the piece)
    spans = []
    for nt in notes:
        start = int(round(nt.onset * sample_rate))
        sounding = max(1, int(round(nt.length * sample_rate)))
        spans.append((start, sounding, min(sounding + n_release, n_out - start)))
    longest: dict[float, int] = {}
    for nt, (_, _, n) in zip(notes, spans):
        longest[nt.pitch] = max(longest.get(nt.pitch, 0), n)
    n_max = max(longest.values(), default=0)
    t = np.arange(n_max) / sample_rate
    # A shared envelope shape, cut per note: attack ramp, decay towards the sustain level.
    shape = np.minimum(t / attack, 1.0) * (SUSTAIN_LEVEL + (1 - SUSTAIN_LEVEL) * np.exp(-t / DECAY_S))
    fade_transient = np.exp(-t / TRANSIENT_DECAY_S)
    tones = {}
    for pitch, n in longest.items():
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        body = _wavetable(f0, tilt, even, phases, sample_rate)
        onset = _wavetable(f0, max(tilt - TRANSIENT_TILT_DROP, TRANSIENT_TILT_MIN), even, phases, sample_rate)
        # the body, and what the brighter onset adds to it
        tones[pitch] = _tones([body, onset - body], f0, n, sample_rate)

    out = np.zeros(n_out)
    for nt, (start, sounding, n) in zip(notes, spans):
        if n <= 0:
            continue
        env = shape[:n].copy()
        if n > sounding:
            env[sounding:] *= ramp[:n - sounding]
        body, brighter = tones[nt.pitch]
        amp = 10 ** (nt.gain_db / 20)
        out[start:start + n] += amp * env * (body[:n] + nt.transient * fade_transient[:n] * brighter[:n])
        m = min(n_burst, n)
        out[start:start + m] += amp * nt.transient * burst[:m]

    n_fade = min(int(round(FADE_OUT_S * sample_rate)), n_out)
    out[n_out - n_fade:] *= np.linspace(1.0, 0.0, n_fade)
    rms = np.sqrt(np.mean(out ** 2))
    if rms > 0:
        out *= 10 ** ((REFERENCE_RMS_DBFS + cues.dynamics_db) / 20) / rms
    peak = np.max(np.abs(out), initial=0.0)
    if peak > PEAK_CEILING:
        out *= PEAK_CEILING / peak
    return out.astype(np.float32)


def synthesize(seed: int, index: int, *, duration: float, sample_rate: int) -> np.ndarray:
    """The audio of track ``index`` of the corpus with this ``seed``."""
    cues = draw_cues(seed, index)
    notes = compose(cues, _rng(seed, _STREAM_SCORE, index), duration)
    return render(cues, _rng(seed, _STREAM_SOUND, index), duration=duration, sample_rate=sample_rate,
                  notes=notes)


# --- Corpus -------------------------------------------------------------------------------------
def assign_splits(quadrants, splits=(0.7, 0.15, 0.15), *, seed: int = 0) -> list[str]:
    """Seeded stratified split: within each quadrant, a shuffled ``train``/``val``/``test`` cut.

    Counts per quadrant are ``round(cumsum(splits) * n_q)`` differences, so every quadrant is
    split in the given proportions to within one track.
    """
    q = np.asarray(quadrants)
    out = np.empty(len(q), dtype=object)
    rng = _rng(seed, _STREAM_SPLIT)
    bounds = np.cumsum(splits)
    for quadrant in np.unique(q):
        idx = rng.permutation(np.flatnonzero(q == quadrant))
        cuts = np.round(bounds * len(idx)).astype(int)
        for name, part in zip(SPLIT_NAMES, np.split(idx, cuts[:-1])):
            out[part] = name
    return out.tolist()


def _check_params(n_tracks, seed, duration, sample_rate, workers, splits) -> tuple[float, float, float]:
    if not isinstance(n_tracks, (int, np.integer)) or n_tracks < 1:
        raise ConfigError(f"n_tracks must be a positive integer, got {n_tracks!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not duration >= MIN_DURATION_S:
        raise ConfigError(f"duration must be >= {MIN_DURATION_S} s, got {duration!r}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < MIN_SAMPLE_RATE:
        raise ConfigError(f"sample_rate must be an integer >= {MIN_SAMPLE_RATE}, got {sample_rate!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1 (or None for all cores), got {workers!r}")
    splits = tuple(float(s) for s in splits)
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1) > 1e-6:
        raise ConfigError(f"splits must be 3 non-negative proportions (train, val, test) summing "
                          f"to 1, got {splits!r}")
    return splits


def _audio_name(index: int) -> str:
    return f"syn_{index:04d}.wav"


def _is_complete(path: Path, n_samples: int, sample_rate: int) -> bool:
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError):
        return False
    return info.frames == n_samples and info.samplerate == sample_rate and info.channels == 1


def _write_atomic(path: Path, text: str) -> None:
    write_text(path, text)


def _render_to_file(seed: int, index: int, duration: float, sample_rate: int, path: str) -> int:
    """Worker: render track ``index`` and write it atomically as 16-bit WAV."""
    y = synthesize(seed, index, duration=duration, sample_rate=sample_rate)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        sf.write(tmp, y, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise RuntimeError(f"{path}: could not write audio: {e}") from None
    return index


def _pool_context():
    # fork on Linux (as torch's DataLoader does): instant start, and it works from scripts without
    # an `if __name__ == "__main__"` guard; the children only run numpy and libsndfile, never
    # OpenMP, so a parent's torch threads cannot deadlock them. Elsewhere the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def generate(out_dir: str | os.PathLike, *, n_tracks: int = 240, seed: int = 0, duration: float = 12.0,
             sample_rate: int = 44_100, workers: int | None = None,
             splits: tuple[float, float, float] = (0.7, 0.15, 0.15), progress: bool = True) -> list[Track]:
    """Generate (or complete) the synthetic corpus in ``out_dir`` and return its manifest.

    Writes ``out_dir/audio/syn_XXXX.wav`` (mono 16-bit WAV), ``out_dir/tracks.csv`` and
    ``out_dir/synthetic.json`` (the parameters). Resumable: audio files already complete for the
    same ``seed``, ``duration``, ``sample_rate`` and generator version are kept; if those differ
    from ``synthetic.json``, every ``syn_*.wav`` there is deleted and the corpus re-rendered.
    ``n_tracks`` and ``splits`` only change the manifest (track ``i`` does not depend on them).

    Parameters
    ----------
    out_dir : folder to write into (created if needed)
    n_tracks : number of tracks
    seed : non-negative integer; the corpus is a pure function of the parameters
    duration : seconds per track (>= 1)
    sample_rate : Hz
    workers : processes for rendering (default ``os.cpu_count()``); the output does not depend on it
    splits : (train, val, test) proportions, stratified by quadrant
    progress : show a tqdm progress bar

    Returns
    -------
    list[Track] with absolute audio paths, continuous labels in [-1, 1], quadrant, split,
    ``group`` = track id and ``extra`` = the cue values (:class:`Cues` fields plus ``key``).
    """
    splits = _check_params(n_tracks, seed, duration, sample_rate, workers, splits)
    out_dir = Path(out_dir).resolve()
    audio_dir = out_dir / AUDIO_DIR
    audio_dir.mkdir(parents=True, exist_ok=True)
    n_samples = int(round(duration * sample_rate))
    params = {"generator": __name__, "version": GENERATOR_VERSION, "seed": int(seed),
              "duration": float(duration), "sample_rate": int(sample_rate)}
    params_path = out_dir / PARAMS_FILE
    try:
        old = json.loads(params_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    for f in audio_dir.iterdir():
        # Audio from other parameters (or of unknown origin), and temporaries of a killed run.
        if _TMP_RE.fullmatch(f.name) or (_AUDIO_RE.fullmatch(f.name) and (
                not isinstance(old, dict) or {k: old.get(k) for k in params} != params)):
            f.unlink()
    _write_atomic(params_path, json.dumps({**params, "n_tracks": int(n_tracks), "splits": list(splits)},
                                          indent=2) + "\n")

    paths = [audio_dir / _audio_name(i) for i in range(n_tracks)]
    todo = [i for i, p in enumerate(paths) if not _is_complete(p, n_samples, sample_rate)]
    if todo:
        workers = min(workers or os.cpu_count() or 1, len(todo))
        args = [(int(seed), i, float(duration), int(sample_rate), str(paths[i])) for i in todo]
        with tqdm(total=len(todo), desc="synthetic corpus", unit="track", disable=not progress) as bar:
            if workers == 1:
                for a in args:
                    _render_to_file(*a)
                    bar.update()
            else:
                with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
                    futures = [pool.submit(_render_to_file, *a) for a in args]
                    try:
                        for fut in as_completed(futures):
                            fut.result()
                            bar.update()
                    except BaseException:  # a failed write (disk full) or Ctrl-C: stop the rest
                        for fut in futures:
                            fut.cancel()
                        raise

    tracks = []
    for i, path in enumerate(paths):
        cues = draw_cues(seed, i)
        a, v = draw_labels(seed, i, cues)
        tracks.append(Track(track_id=path.stem, path=str(path), source=SOURCE, label_a=a, label_v=v,
                            quadrant=quadrant_from_va(v, a), duration=n_samples / sample_rate,
                            group=path.stem, licence=LICENCE, extra={**asdict(cues), "key": cues.key}))
    for t, split in zip(tracks, assign_splits([t.quadrant for t in tracks], splits, seed=seed)):
        t.split = split
    manifest = out_dir / MANIFEST_FILE
    try:
        unchanged = read_manifest(manifest) == tracks
    except (OSError, ValueError):
        unchanged = False
    if not unchanged:  # leave an identical manifest untouched (its mtime too)
        write_manifest(tracks, manifest)
    return tracks


def synthetic_manifest(out_dir: str | os.PathLike, **kw) -> list[Track]:
    """:func:`generate` under the name the dataset registry uses."""
    return generate(out_dir, **kw)


def cues_from_track(track: Track) -> Cues:
    """The :class:`Cues` stored in a synthetic track's ``extra``."""
    names = {f.name for f in fields(Cues)}
    missing = names - set(track.extra)
    if missing:
        raise ValueError(f"track {track.track_id}: extra lacks cue values {sorted(missing)}")
    return Cues(**{k: track.extra[k] for k in names})


__all__ = ["Cues", "Note", "generate", "synthetic_manifest", "draw_cues", "draw_labels",
           "labels_from_cues", "target_quadrant", "compose", "render", "synthesize",
           "assign_splits", "cues_from_track", "AROUSAL_WEIGHTS", "VALENCE_WEIGHTS"]
