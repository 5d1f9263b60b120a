"""Configuration dataclasses: one frozen dataclass per concern, saved whole in every output.

Every default carries its source. "Paper" is the Memo2496 / DAMER paper; section numbers refer
to it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where the default model lives inside the package (package data, no network at load time).
DEFAULT_MODEL_FILE = Path(__file__).parent / "assets" / "default_model.pt"

# --- Memo2496 paper, §III-A / §III-C -----------------------------------------------------------
SAMPLE_RATE = 44_100  # §III-A: all audio is resampled to 44.1 kHz
TARGET_LUFS = -23.0  # §III-A: EBU R128 loudness normalisation
WINDOW_START_S = 15.0  # §III-A: analysis window from 15 s ...
WINDOW_SECONDS = 60.0  # ... to 75 s after onset
N_MELS = 128  # §III-C
N_GAMMATONE = 84  # §III-C
N_FRAMES = 87  # §III-C: T = 87 frames, i.e. frame length N = window / 44 with hop N/2
PRE_EMPHASIS = 0.97  # §III-C: x'(n) = x(n) - 0.97 x(n-1)


class ConfigError(ValueError):
    """A configuration value is invalid (the one error type for bad parameters)."""


@dataclass(frozen=True)
class AudioConfig:
    """How a file becomes the analysis window (paper §III-A).

    short_policy: what to do with tracks shorter than ``window_start + window_seconds``.
      Tracks of at least ``window_seconds`` use a window centred in the track (for a track of
      ``L`` seconds the window starts at ``min(window_start, (L - window_seconds) / 2)``).
      Shorter tracks use the whole clip, extended to ``window_seconds`` by
      ``"repeat"`` (loop the clip; default, so that no frame is silence and the band statistics of
      a 30 s clip stay those of the music) or ``"zero"`` (pad with silence at the end).
    """

    sample_rate: int = SAMPLE_RATE
    target_lufs: float | None = TARGET_LUFS  # None disables loudness normalisation
    # Loudness below this is treated as silence and left unscaled (BS.1770 absolute gate, -70 LUFS).
    silence_lufs: float = -70.0
    window_start: float = WINDOW_START_S
    window_seconds: float = WINDOW_SECONDS
    short_policy: str = "repeat"  # "repeat" | "zero"
    # The pretrained encoders (musicnn) hear a short clip once: its own 3 s patches, pooled,
    # instead of the window the clip was extended to. The extension exists for the spectral
    # views' fixed frame count; a pooled embedding does not need it, and looping a 30 s clip
    # doubled the encoder's work (half of `merkit predict`'s time) to hear the same audio
    # again, across a seam. False: loop as the spectral views (models stored before it existed).
    encoder_once: bool = dataclasses.field(default=True, metadata={"absent": False})
    min_seconds: float = 1.0  # shorter audio is rejected as too short
    mono: bool = True  # False keeps (n, channels) windows for the API; extraction is mono

    def __post_init__(self):
        if self.short_policy not in ("repeat", "zero"):
            raise ConfigError(f"short_policy must be 'repeat' or 'zero', got {self.short_policy!r}")
        if self.sample_rate <= 0 or self.window_seconds <= 0 or self.window_start < 0:
            raise ConfigError("sample_rate and window_seconds must be > 0, window_start >= 0")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))


@dataclass(frozen=True)
class FeatureConfig:
    """Mel spectrogram and gammatone cochleagram (paper §III-C).

    The frame length ``N`` is derived so that the window yields exactly ``n_frames`` frames with
    hop ``N/2``: ``N = floor(2 L / (n_frames + 1))`` (the paper's "N = window length / 44" for
    T = 87). Set ``frame_length`` to fix ``N`` instead (the 22.05 kHz preset).

    n_fft: ``None`` means the paper's 2N rounded up to the next fast FFT length (2N = 120 272 has
    the prime factor 7517 and costs 14x more in pocketfft; the next fast length, 121 500, changes
    the bin spacing by 1 %). An int forces that FFT size (``2 * N`` for the literal paper value).
    """

    n_mels: int = N_MELS
    n_gammatone: int = N_GAMMATONE
    n_frames: int = N_FRAMES
    frame_length: int | None = None
    n_fft: int | None = None
    pre_emphasis: float = PRE_EMPHASIS
    # Mel filterbank: librosa's default definition (Slaney scale, area-normalised triangles).
    mel_fmin: float = 0.0
    mel_fmax: float | None = None  # None: Nyquist
    mel_htk: bool = False
    mel_norm: str | None = "slaney"
    # Gammatone: 84 channels = 7 octaves x 12 per octave from C1 (32.70 Hz) up to B7 (3951 Hz),
    # librosa's CQT default; the paper says only "logarithmically spaced".
    gt_fmin: float = 32.703195662574764
    gt_bins_per_octave: int = 12
    gt_order: int = 4  # 4th-order gammatone (Patterson et al. 1992)
    gt_bandwidth: float = 1.019  # ERB multiplier for a 4th-order gammatone (Glasberg & Moore 1990)
    gt_floor_db: float = -60.0  # filter weights below this (relative to peak) are dropped (sparsity)
    # Outer-hair-cell compression: E -> E ** gt_power before log10 (Stevens' cube-root law).
    gt_power: float = 1.0 / 3.0
    log_floor: float = 1e-10  # energies are clamped here before log: silence gives finite values

    def __post_init__(self):
        if self.n_frames < 1 or self.n_mels < 1 or self.n_gammatone < 1:
            raise ConfigError("n_frames, n_mels and n_gammatone must be >= 1")
        if self.frame_length is not None and (self.frame_length < 4 or self.frame_length % 2):
            raise ConfigError(f"frame_length must be even and >= 4, got {self.frame_length}")


@dataclass(frozen=True)
class Preset:
    audio: AudioConfig
    features: FeatureConfig


PRESETS: dict[str, Preset] = {
    # The paper: 60 s at 44.1 kHz, T = 87 frames of ~1.36 s with hop ~0.68 s.
    "paper": Preset(AudioConfig(), FeatureConfig()),
    # The authors' related code: 87 frames ~ 1 s at 22.05 kHz with hop 256 (N = 512, 2N = 1024);
    # the 1.02 s window is taken where the paper's window is centred (45 s).
    "frames1s": Preset(
        AudioConfig(sample_rate=22_050, window_start=WINDOW_START_S + WINDOW_SECONDS / 2 - 0.5,
                    window_seconds=(N_FRAMES + 1) * 256 / 22_050),
        FeatureConfig(frame_length=512, n_fft=1024),
    ),
}


def replace(cfg, **changes):
    """``dataclasses.replace`` that ignores ``None`` values (handy for optional CLI flags)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls, d: dict[str, Any]):
    """A config from a stored dict (run.json, a checkpoint). Unknown keys are dropped; a field
    the dict lacks (it was stored before the field existed) takes the value that meant then
    (``_f(..., absent=...)``), else its default."""
    fields = dataclasses.fields(cls)
    values = {f.name: f.metadata["absent"] for f in fields if "absent" in f.metadata and f.name not in d}
    names = {f.name for f in fields}
    return cls(**values, **{k: v for k, v in d.items() if k in names})


# =================================================================================================
# Models and training (DAMER, paper §IV and §V-A)
# =================================================================================================
# Everything below configures `merkit.models`, `merkit.training` and `merkit.evaluation`.
# Fields carry their help text in ``metadata["help"]``; the command line is generated from the
# dataclasses (``merkit.commands._args``) instead of repeating them.

DAMER_DIM = 128  # §IV-B, Eqs. 1-2: token dimension D
DAMER_LAYERS = 2  # §IV-B: L cross-view layers
DAMER_HEADS = 4  # §IV-B: H attention heads
DAMER_FFN_MULT = 4  # §IV-B, Eqs. 7-8: FFN expansion
DAMER_FUSION_DIM = 256  # §IV-B: D_f of the FusionMLP
# The paper gives no dropout rate; 0.1 is the Transformer default (Vaswani et al. 2017, §5.4).
DAMER_DROPOUT = 0.1

MODEL_HEADS = ("auto", "mel", "coch", "fused", "ensemble", "out")
TASKS = ("a", "v", "quadrant")
SELECT_METRICS = ("acc", "f1", "auc", "loss", "ccc")


_NO_ABSENT = object()


def _f(default, help: str, *, absent=_NO_ABSENT):
    """A dataclass field with its command-line help attached; ``absent``: the behaviour of
    configs stored before the field existed, when it differs from ``default``."""
    meta = {"help": help} if absent is _NO_ABSENT else {"help": help, "absent": absent}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model: the only thing ``merkit.models.load_model`` needs (with the
    state dict) to rebuild it. ``n_mels``, ``n_coch``, ``n_frames`` and ``n_classes`` are set
    from the data and the task, not by hand."""

    name: str = _f("damer", "model name in merkit.models.MODELS")
    n_mels: int = _f(N_MELS, "Mel bands of the input")
    n_coch: int = _f(N_GAMMATONE, "cochleagram channels of the input")
    n_frames: int = _f(N_FRAMES, "time frames T of the input")
    n_classes: int = _f(2, "2 for arousal/valence, 4 for quadrants, 1 for regression (one "
                           "continuous output per head)")
    token_mode: str = _f("band", "'band': each frequency band is a token with its T frames as "
                                 "features (§IV-A); 'frame': each time frame is a token")
    dim: int = _f(DAMER_DIM, "token dimension D (§IV-B)")
    n_layers: int = _f(DAMER_LAYERS, "attention layers L (§IV-B)")
    n_heads: int = _f(DAMER_HEADS, "attention heads H (§IV-B)")
    ffn_mult: int = _f(DAMER_FFN_MULT, "FFN expansion factor (Eqs. 7-8)")
    fusion_dim: int = _f(DAMER_FUSION_DIM, "FusionMLP output size D_f (§IV-B)")
    dropout: float = _f(DAMER_DROPOUT, "dropout on the attention and FFN outputs (residual "
                                              "dropout) and in the FusionMLP")
    fast_dropout: bool = _f(True, "CPU dropout masks from 15-bit random lanes, four per 64-bit "
                                  "draw (p rounded to a multiple of 2^-15; 3x faster than "
                                  "torch's per-element Bernoulli, bench/cpu_kernels.py); off: torch's "
                                  "dropout, bit-identical to runs before this option")
    # Not in the paper: attention and mean pooling are blind to token order, so without a
    # learned position (band or frame index) embedding a band token would not know its band.
    pos_embedding: bool = _f(True, "add a learned band/frame index embedding to the tokens")
    use_dsaf: bool = _f(True, "cross-view attention (DSAF); off: self-attention within each view")
    inference_head: str = _f("auto", "head used for predictions and model selection: auto (the "
                                     "model's own choice: the ensemble for DAMER) | mel | coch | "
                                     "fused | ensemble (mean of the heads' outputs) | out (single-"
                                     "head models)")
    # --- CNN baselines (merkit.models.resnet) ---------------------------------------------------
    width: int = _f(64, "resnet/shortchunk: channels of the first stage (later stages double it)")
    chunk_frames: int = _f(16, "shortchunk: frames per chunk (16 of the paper preset's 87 frames "
                               "~ 11 s); predictions average all chunks")

    def __post_init__(self):
        if self.token_mode not in ("band", "frame"):
            raise ConfigError(f"token_mode must be 'band' or 'frame', got {self.token_mode!r}")
        if self.inference_head not in MODEL_HEADS:
            raise ConfigError(f"inference_head must be one of {MODEL_HEADS}, got {self.inference_head!r}")
        if self.width < 1 or self.chunk_frames < 1:
            raise ConfigError("width and chunk_frames must be >= 1")
        if self.dim % self.n_heads:
            raise ConfigError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if min(self.n_mels, self.n_coch, self.n_frames, self.dim, self.n_heads, self.ffn_mult,
               self.fusion_dim) < 1 or self.n_layers < 0:
            raise ConfigError("model sizes must be >= 1 (n_layers >= 0)")
        if self.n_classes < 1:
            raise ConfigError(f"n_classes must be >= 1 (1: regression), got {self.n_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """Task, objective, optimisation and evaluation protocol (paper §IV-C to §V-A)."""

    # --- task ---------------------------------------------------------------------------------
    label: str = _f("a", "task: a (arousal), v (valence) or quadrant (4 classes)")
    threshold: float = _f(0.0, "labels >= threshold are the positive class (0 for labels centred "
                               "at 0; 0.5 for PMEmo's [0, 1] scale)")
    regression: bool = _f(False, "regress the continuous label (a or v) with MSE and report R², "
                                 "Pearson r, CCC and RMSE instead of classifying")
    # --- objective, Eq. 22 and §V-A ----------------------------------------------------------
    w_cls: float = _f(1.0, "weight of L_cls, CE summed over the three heads (Eq. 22)")
    w_pl: float = _f(0.8, "weight of the pseudo-label loss L_PL (Eq. 22)")
    w_js: float = _f(0.2, "weight of the view-consistency term JS(p_mel, p_coch) (Eq. 22)")
    w_cont: float = _f(0.1, "weight of the memory contrastive loss L_cont (Eq. 22)")
    use_pcl: bool = _f(True, "Progressive Confidence Labelling: L_PL and the JS term")
    use_saml: bool = _f(True, "Style-Anchored Memory Learning: the memory queue and L_cont")
    # --- PCL, §IV-C and Algorithm 1 -----------------------------------------------------------
    tau_max: float = _f(1.5, "PCL temperature at the first epoch")
    tau_min: float = _f(0.7, "PCL temperature reached at rho = 1")
    theta0: float = _f(0.65, "PCL confidence threshold at the first epoch")
    theta_min: float = _f(0.35, "PCL threshold floor")
    pcl_rho: str = _f("paper", "schedule progress: 'paper' rho = (t-1)/T (Algorithm 1, tau ends "
                               "at tau_min + (tau_max-tau_min)/T); 'inclusive' rho = (t-1)/(T-1)")
    pcl_fused: str = _f("head", "fused distribution: 'head' softmax of the fused head (Algorithm "
                                "1) or 'views' the mean of p_mel and p_coch (Eq. 14)")
    unlabelled_ratio: float = _f(1.0, "with --unlabelled: unlabelled samples per labelled one "
                                      "in each step")
    # --- SAML, §IV-D --------------------------------------------------------------------------
    queue_size: int = _f(512, "memory queue length K (§IV-D)")
    cont_tau: float = _f(0.07, "temperature of the supervised InfoNCE (Eqs. 19-20)")
    key_momentum: float = _f(0.95, "EMA momentum of the key encoder that fills the queue "
                                   "(§IV-D 'momentum 0.95'); 0: keys are the online features")
    # --- MuseFuse (merkit.models.musefuse; its public README) ----------------------------------
    proto_momentum: float = _f(0.9, "musefuse ProtoAlign: EMA momentum of the class prototypes")
    w_proto: float = _f(0.1, "musefuse: weight of the prototype-alignment loss")
    rp_theta_start: float = _f(0.6, "musefuse ReliaPseudo: reliability threshold at the first epoch")
    rp_theta_end: float = _f(0.3, "musefuse ReliaPseudo: reliability threshold at the last epoch")
    w_rp: float = _f(0.5, "musefuse: weight of the reliability-weighted pseudo-label loss")
    kd_temperature: float = _f(2.0, "musefuse TriDistill: distillation temperature T")
    w_kd: float = _f(0.5, "musefuse: weight of the symmetric tri-branch distillation loss")
    # --- augmentation -------------------------------------------------------------------------
    augment: bool = _f(False, "on-the-fly augmentation of the training batches (random circular "
                              "time shift, one time and one frequency mask; merkit.training.augment); "
                              "on by default for resnet/shortchunk, off for DAMER and MuseFuse as in "
                              "their papers")
    # --- optimisation, §V-A -------------------------------------------------------------------
    epochs: int = _f(80, "training epochs")
    batch_size: int = _f(256, "batch size")
    lr: float = _f(1e-3, "Adam learning rate")
    scheduler: str = _f("cosine", "learning-rate schedule: cosine (annealed to 0 over the epochs, "
                                  "§V-A) | plateau (multiplied by plateau_factor when the "
                                  "validation metric stalls for plateau_patience epochs)")
    plateau_factor: float = _f(0.5, "scheduler=plateau: learning-rate factor")
    plateau_patience: int = _f(3, "scheduler=plateau: epochs without validation improvement "
                                  "before the learning rate drops")
    weight_decay: float = _f(1e-4, "Adam weight decay")
    grad_clip: float = _f(5.0, "gradient-norm clipping (0: off)")
    amp: bool = _f(True, "mixed precision where the device supports it: CUDA (bfloat16, else "
                         "float16 with loss scaling), and CPUs with native bfloat16 (see cpu_amp)")
    cpu_amp: bool = _f(True, "with amp, on a CPU with native bfloat16 matrix products (AVX512-BF16 "
                             "or AMX): bfloat16 autocast of the forward passes, losses and weights "
                             "in float32; ~2.3x faster epochs with EMOPIA accuracy unchanged "
                             "(bench/results/train_speed.md, emopia.md); --no-cpu-amp: float32. "
                             "Other CPUs train in float32 (emulated bfloat16 would be slower)",
                       absent=False)  # runs stored before this option trained in float32
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    compile: bool = _f(False, "torch.compile the training and key-encoder forward passes (same "
                              "maths; costs minutes of compilation once per run, pays off on long "
                              "runs; falls back to eager with a warning if compilation fails)")
    # --- evaluation protocol ------------------------------------------------------------------
    split: str = _f("protocol", "protocol: stratified, song-grouped train/test split; official: "
                                "the tracks' own train/val/test split")
    test_size: float = _f(0.3, "test share of the protocol split (the paper's 70/30)")
    val_size: float = _f(0.15, "validation share carved from the training part for model "
                               "selection (0: keep the last epoch)")
    select_metric: str = _f("acc", "validation metric that picks the best epoch: acc | f1 | auc | "
                                   "loss (ties go to the lower validation loss); with --regression "
                                   "acc/f1/auc mean ccc")
    patience: int = _f(0, "stop after this many epochs without validation improvement (0: off)")
    seed: int = _f(0, "seed of the split, the initialisation and the batch order")
    eval_batch_size: int = _f(512, "batch size for validation and test predictions")

    def __post_init__(self):
        if self.label not in TASKS:
            raise ConfigError(f"label must be one of {TASKS}, got {self.label!r}")
        if self.pcl_rho not in ("paper", "inclusive"):
            raise ConfigError(f"pcl_rho must be 'paper' or 'inclusive', got {self.pcl_rho!r}")
        if self.pcl_fused not in ("head", "views"):
            raise ConfigError(f"pcl_fused must be 'head' or 'views', got {self.pcl_fused!r}")
        if self.split not in ("protocol", "official"):
            raise ConfigError(f"split must be 'protocol' or 'official', got {self.split!r}")
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(f"select_metric must be one of {' | '.join(SELECT_METRICS)}, "
                              f"got {self.select_metric!r}")
        if self.scheduler not in ("cosine", "plateau"):
            raise ConfigError(f"scheduler must be 'cosine' or 'plateau', got {self.scheduler!r}")
        if self.regression and self.label == "quadrant":
            raise ConfigError("regression needs a continuous label: a or v, not quadrant")
        if not (0.0 <= self.proto_momentum < 1.0 and 0.0 < self.plateau_factor < 1.0
                and self.kd_temperature > 0 and self.plateau_patience >= 0):
            raise ConfigError("need 0 <= proto_momentum < 1, 0 < plateau_factor < 1, "
                              "kd_temperature > 0, plateau_patience >= 0")
        if not (0.0 < self.tau_min <= self.tau_max and 0.0 <= self.theta_min <= self.theta0 <= 1.0):
            raise ConfigError("need 0 < tau_min <= tau_max and 0 <= theta_min <= theta0 <= 1")
        if not 0.0 <= self.key_momentum < 1.0:
            raise ConfigError(f"key_momentum must be in [0, 1), got {self.key_momentum}")
        if self.epochs < 1 or self.batch_size < 1 or self.queue_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("epochs, batch_size, queue_size and eval_batch_size must be >= 1")
        if not 0.0 < self.test_size < 1.0 or not 0.0 <= self.val_size < 1.0:
            raise ConfigError("need 0 < test_size < 1 and 0 <= val_size < 1")
        if self.lr <= 0 or self.cont_tau <= 0 or self.unlabelled_ratio < 0 or self.grad_clip < 0:
            raise ConfigError("lr and cont_tau must be > 0; unlabelled_ratio and grad_clip >= 0")

    @property
    def n_classes(self) -> int:
        """Outputs per head: 1 for regression, 4 for quadrants, 2 for a binary dimension."""
        if self.regression:
            return 1
        return 4 if self.label == "quadrant" else 2
