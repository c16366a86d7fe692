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

# The prior map fed to the network as an extra channel (a prior, whichever model made it).
PRIORS = ("spm", "coarse")

# Fluxes in the physics loss's continuity residual (piff.model.physics, docs/architecture.md).
PHYSICS_FLUX_MODES = ("data", "scaled")

LR_SCHEDULES = ("constant", "cosine", "step")

# Config keys of files written by earlier piff versions -> today's names, so that old model.pt
# files and checkpoints still load (ModelConfig and ExperimentConfig apply it).
LEGACY_KEYS = {"use_spm": "use_prior"}


def rename_legacy_keys(d: dict) -> dict:
    """A copy of a config dict with earlier versions' key names replaced by today's."""
    return {LEGACY_KEYS.get(k, k): v for k, v in d.items()}
