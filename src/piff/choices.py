"""The named choices an experiment makes: the one place each list is written.

Torch-free on purpose: the Snakemake controller (``workflow/rules/common.smk``) and the
experiment config check import them without loading torch. The modules that implement a
choice (the bridge, the samplers, the physics loss, the datasets) import their list from here.
"""

# Experiment types: trained by the `train` rule, or scored untrained from the dataset's prior.
TRAINED_KINDS = ("piff", "regression")  # generative bridge; same-backbone one-shot U-Net
BASELINE_KINDS = ("spm", "coarse_prior")  # the fill-and-spill table; the coarse dynamic solver
EXPERIMENT_TYPES = TRAINED_KINDS + BASELINE_KINDS

# Bridge (piff.model.bridge): noise of the path, and samplers with exactly NFE evaluations.
NOISE_MODES = ("none", "constant", "bridge")
SAMPLERS = ("euler", "heun", "euler_maruyama")
STOCHASTIC_SAMPLERS = ("euler_maruyama",)  # the others are deterministic: one member
# What the network outputs (the samplers always integrate the velocity derived from it):
# the velocity x1 - x0 (the paper), or the clean depth x0 itself (v = x1 - x0_hat).
PREDICTIONS = ("velocity", "x0")
# Density of the training time t: U[0, 1) (the paper); SD3's logit-normal; pi0's shifted Beta,
# heavier towards t = 1 (the DEM end, where every sampler starts).
TIME_SAMPLINGS = ("uniform", "logit_normal", "beta_dem", "anchored")
# ``anchored``: the share of training draws at t = 1, the input of every sampler's first
# evaluation (its only one at NFE 1); the rest U[0, 1). Measured in docs/benchmarks.md,
# "Anchored time density" and "Anchored share 0.8".
DEFAULT_ANCHOR_SHARE = 0.5
# Loss on the clean depth estimate in metres, added to the velocity MSE (weight depth_loss_weight).
DEPTH_LOSSES = ("none", "l1", "wet_l1")

# Training augmentation (piff.data.symmetry): none, or each training map under a random grid
# symmetry (flip or transpose) that keeps its DEM's boundary conditions.
AUGMENTATIONS = ("none", "symmetry")

# The prior map fed to the network as an extra channel (a prior, whichever model made it).
PRIORS = ("spm", "coarse")

# Self-attention on a map larger than the training maps (piff predict): within windows of the
# training map size (the default: each token attends to as many neighbours as in training, cost
# linear in the area), or over the whole map. Measured in docs/benchmarks.md.
ATTENTION_MODES = ("windows", "global")
DEFAULT_ATTENTION = "windows"

# Arithmetic of the network at inference (piff predict, test-set sampling): bfloat16 autocast
# where the hardware computes it natively (a CUDA GPU with bf16, a CPU with AMX or AVX-512 BF16),
# else float32 ("auto"); or forced. Measured in docs/benchmarks.md.
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_PRECISION = "auto"

# Fluxes in the physics loss's continuity residual (piff.model.physics, docs/architecture.md):
# as stored, rescaled by the end-of-hour face depths, or by the hour-mean face depths.
PHYSICS_FLUX_MODES = ("data", "scaled", "scaled_hour_mean")
# How the residual becomes a loss: mean R^2 in model depth units (l2, the paper's), or mean |R| in
# metres (l1: with the data's fluxes it is the L1 depth loss, median-seeking like it)
PHYSICS_NORMS = ("l2", "l1")

LR_SCHEDULES = ("constant", "cosine", "step")

# Network presets (the keys of piff.model.config.PRESETS, which holds their sizes; a test keeps
# the two equal): named here so the torch-free experiment check can refuse an unknown one.
MODEL_PRESETS = ("demo", "demo_patch2", "demo_patch2_fine", "fast", "tiny", "paper")

# Where the rainfall-forecast members are centred (piff.hydro.rain_ensemble, docs/ensemble.md):
# on a forecast that itself misses the real storm (the real storm is then one more member), or
# on the real storm (every member's error measured from the truth: over-dispersive by design).
FORECAST_CENTRES = ("forecast", "observed")
DEFAULT_FORECAST_CENTRE = "forecast"

# The ensemble summary's name of an experiment's error-dressed ensemble: "<experiment> dressed"
# (piff.inference.dressing; the workflow's ensemble.dressing).
DRESSED_SUFFIX = " dressed"
# ... and of its ensemble anchored on the solver's control run: "<experiment> anchored"
# (piff.inference.anchoring; the workflow's ensemble.anchored).
ANCHORED_SUFFIX = " anchored"

# Config keys of files written by earlier piff versions -> today's names, so that old model.pt
# files and checkpoints still load (ModelConfig and ExperimentConfig apply it).
LEGACY_KEYS = {"use_spm": "use_prior"}


def rename_legacy_keys(d: dict) -> dict:
    """A copy of a config dict with earlier versions' key names replaced by today's."""
    return {LEGACY_KEYS.get(k, k): v for k, v in d.items()}


def anchor_share_problem(anchor_share: float, time_sampling: str) -> str | None:
    """What is wrong with ``anchor_share`` under ``time_sampling``, or None: the one rule that the
    bridge (ValueError) and the experiment check (one line naming the config) both apply."""
    if not 0 <= anchor_share < 1:  # at 1 no draw would train the path below t = 1
        return f"anchor_share must be in [0, 1), got {anchor_share!r}"
    if anchor_share != DEFAULT_ANCHOR_SHARE and time_sampling != "anchored":
        return f"anchor_share is an option of time_sampling 'anchored', not {time_sampling!r}"
    return None
