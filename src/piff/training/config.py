"""One experiment of config/config.yaml: what is trained (type, network, bridge, loss, data)
and how it is run, sampled and scored (NFE, sampler, members, hours), with its defaults.

The defaults mirror ``workflow/schemas/config.schema.yaml`` (the schema fills them in the
workflow; this class fills them for direct ``piff train`` use). :meth:`ExperimentConfig.check`
is the one check of every value's type and range, of the named choices (``piff.choices``) and
of their combination; the workflow calls it too (``common.smk``), so a bad experiment fails before
any job runs. Torch-free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from piff import choices
from piff.errors import PiffInputError

# Keys that change how a run is watched, sampled or scored, not the weights it produces:
# editing them resumes a run instead of retraining it (the fingerprint leaves them out) and
# never reruns the train rule (common.smk keeps them out of its tracked params). The dataset
# enters through its checksum (the fingerprint) and its path (the rule's input) instead.
RUN_ONLY_KEYS = ("description", "log_every", "keep_checkpoints", "wall_time_budget_min", "nfe",
                 "sampler", "members", "dataset", "nodes", "eval_hours", "sample_batch_size")

# Lower bounds of the numeric options (as in workflow/schemas/config.schema.yaml): (bound, inclusive).
MINIMUM = {"sigma": (0, True), "physics_weight": (0, True), "batch_size": (1, True), "microbatch": (1, True),
           "lr": (0, False), "rain_encoder_lr": (0, False), "weight_decay": (0, True), "grad_clip": (0, False),
           "ema_decay": (0, True), "warmup_steps": (0, True), "steps": (1, True), "ckpt_every": (1, True),
           "keep_checkpoints": (1, True), "log_every": (1, True), "nproc": (1, True), "members": (1, True),
           "nodes": (1, True), "wall_time_budget_min": (0, True), "sample_batch_size": (1, True),
           "depth_loss_weight": (0, True),
           "velocity_loss_weight": (0, True)}  # anchor_share: choices.anchor_share_problem
MAXIMUM = {"ema_decay": 1}
# Keys added after model files and checkpoints were first written (issue 12). Their defaults
# reproduce the earlier behaviour: at its default the fingerprint leaves such a key out, so
# runs started before they existed keep their fingerprint and resume.
ADDED_KEYS = ("prediction", "prior_residual", "time_sampling", "depth_loss", "depth_loss_weight", "augment",
              "anchor_share", "velocity_loss_weight", "physics_norm")
POSITIVE_INT_LISTS = ("nfe", "eval_hours")  # lists of whole numbers >= 1

_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
          "list": "a list", "None": "null"}


def _has_type(value, kind: str) -> bool:
    """JSON/YAML typing: a float option takes an integer too; booleans are neither."""
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "float":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, {"int": int, "str": str, "list": list}[kind])


@dataclass
class ExperimentConfig:
    dataset: str = ""
    description: str = ""
    type: str = "piff"  # piff | regression
    model: str = "tiny"
    noise: str = "constant"
    sigma: float = 0.1
    use_physics: bool = False
    physics_weight: float = 0.1
    physics_flux: str = "scaled"
    physics_norm: str = "l2"  # piff.choices.PHYSICS_NORMS: mean R^2 (model units) or mean |R| (metres)
    prediction: str = "velocity"  # piff.choices.PREDICTIONS: what the bridge's network outputs
    prior_residual: bool = False  # x0 prediction: the network adds a correction to the prior map
    time_sampling: str = "uniform"  # piff.choices.TIME_SAMPLINGS: training density of t
    anchor_share: float = choices.DEFAULT_ANCHOR_SHARE  # time_sampling anchored: share of draws at t = 1
    depth_loss: str = "none"  # piff.choices.DEPTH_LOSSES: loss on the clean depth in metres
    depth_loss_weight: float = 1.0  # weight of depth_loss, per metre of mean absolute error
    velocity_loss_weight: float = 1.0  # weight of the bridge's velocity MSE (model units squared)
    augment: str = "none"  # piff.choices.AUGMENTATIONS: grid symmetries of the training maps
    use_prior: bool = True
    prior: str = "spm"
    batch_size: int = 16
    microbatch: int = 16
    lr: float = 2e-4
    rain_encoder_lr: float = 4e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    lr_schedule: str = "cosine"
    warmup_steps: int = 50
    steps: int = 1000
    ckpt_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 20
    nproc: int = 1
    amp: bool = False
    wall_time_budget_min: float | None = None
    nfe: list = field(default_factory=lambda: [1, 2, 5, 10])
    sampler: str = "euler"
    members: int = 1
    seed: int = 0
    nodes: int = 1
    eval_hours: list | None = None
    sample_batch_size: int = 32

    @classmethod
    def from_dict(cls, d: dict, source="experiment") -> ExperimentConfig:
        if not isinstance(d, dict):
            raise PiffInputError(source, f"an experiment is a mapping of options, got {type(d).__name__}")
        d = choices.rename_legacy_keys(d)  # experiments stored in model files of earlier versions
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PiffInputError(source, f"unknown training option(s): {', '.join(unknown)}")
        cfg = cls(**d)
        cfg.check(source)
        return cfg

    def check(self, source="experiment") -> None:
        self._check_values(source)
        named = {"type": choices.EXPERIMENT_TYPES, "model": choices.MODEL_PRESETS, "noise": choices.NOISE_MODES,
                 "prior": choices.PRIORS, "lr_schedule": choices.LR_SCHEDULES, "sampler": choices.SAMPLERS,
                 "physics_flux": choices.PHYSICS_FLUX_MODES, "physics_norm": choices.PHYSICS_NORMS,
                 "prediction": choices.PREDICTIONS,
                 "time_sampling": choices.TIME_SAMPLINGS, "depth_loss": choices.DEPTH_LOSSES,
                 "augment": choices.AUGMENTATIONS}
        for key, allowed in named.items():
            if getattr(self, key) not in allowed:
                raise PiffInputError(source, f"{key} = {getattr(self, key)!r}; expected one of {allowed}")
        if self.prior_residual and not (self.prediction == "x0" and self.use_prior):
            raise PiffInputError(source, "prior_residual needs prediction = 'x0' and use_prior = true")
        if self.type == "piff" and self.velocity_loss_weight == 0 and self.depth_loss == "none":
            raise PiffInputError(source, "velocity_loss_weight = 0 with depth_loss = 'none' leaves no loss to train on")
        if problem := choices.anchor_share_problem(self.anchor_share, self.time_sampling):
            raise PiffInputError(source, problem)
        if self.batch_size % (self.nproc * self.microbatch):
            raise PiffInputError(source, f"batch_size {self.batch_size} is not a multiple of nproc x microbatch "
                                         f"= {self.nproc} x {self.microbatch}")

    def _check_values(self, source) -> None:
        """Each option's type (from the annotations above) and range, one line naming the first bad one."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kinds = [k.strip() for k in str(f.type).split("|")]
            if not any(_has_type(value, k) for k in kinds):
                raise PiffInputError(source, f"{f.name} must be {' or '.join(_KINDS[k] for k in kinds)}, "
                                             f"got {value!r}")
            if value is None or isinstance(value, (bool, str, list)):
                continue
            low, inclusive = MINIMUM.get(f.name, (-math.inf, True))
            if value < low or (value == low and not inclusive):
                raise PiffInputError(source, f"{f.name} must be {'at least' if inclusive else 'greater than'} "
                                             f"{low}, got {value!r}")
            if value > MAXIMUM.get(f.name, math.inf):
                raise PiffInputError(source, f"{f.name} must be at most {MAXIMUM[f.name]}, got {value!r}")
        for name in POSITIVE_INT_LISTS:
            items = getattr(self, name)
            if items is not None and not (items and all(_has_type(v, "int") and v >= 1 for v in items)):
                raise PiffInputError(source, f"{name} must be a non-empty list of whole numbers >= 1, got {items!r}")

    @property
    def accumulation(self) -> int:
        """Micro-batches per rank per optimiser step."""
        return self.batch_size // (self.nproc * self.microbatch)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, dataset_sha256: str) -> str:
        """Hash of everything that determines the trained weights (hyper-parameters + data)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        d = {k: v for k, v in self.to_dict().items()
             if k not in RUN_ONLY_KEYS and not (k in ADDED_KEYS and v == defaults[k])}
        blob = json.dumps({"hparams": d, "dataset": dataset_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]
