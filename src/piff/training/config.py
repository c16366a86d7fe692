"""One experiment of config/config.yaml: what is trained (type, network, bridge, loss, data)
and how it is run, sampled and scored (NFE, sampler, members, hours), with its defaults.

The defaults mirror ``workflow/schemas/config.schema.yaml`` (the schema fills them in the
workflow; this class fills them for direct ``piff train`` use). :meth:`ExperimentConfig.check`
is the one check of the named choices (``piff.choices``) and their combination; the workflow
calls it too (``common.smk``), so a bad experiment fails before any job runs. Torch-free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from piff import choices
from piff.errors import PiffInputError

# Keys that change how a run is watched, sampled or scored, not the weights it produces:
# editing them resumes a run instead of retraining it (the fingerprint leaves them out) and
# never reruns the train rule (common.smk keeps them out of its tracked params). The dataset
# enters through its checksum (the fingerprint) and its path (the rule's input) instead.
RUN_ONLY_KEYS = ("description", "log_every", "keep_checkpoints", "wall_time_budget_min", "nfe",
                 "sampler", "members", "dataset", "nodes", "eval_hours", "sample_batch_size")


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
        named = {"type": choices.EXPERIMENT_TYPES, "noise": choices.NOISE_MODES, "prior": choices.PRIORS,
                 "lr_schedule": choices.LR_SCHEDULES, "sampler": choices.SAMPLERS,
                 "physics_flux": choices.PHYSICS_FLUX_MODES}
        for key, allowed in named.items():
            if getattr(self, key) not in allowed:
                raise PiffInputError(source, f"{key} = {getattr(self, key)!r}; expected one of {allowed}")
        if self.batch_size % (self.nproc * self.microbatch):
            raise PiffInputError(source, f"batch_size {self.batch_size} is not a multiple of nproc x microbatch "
                                         f"= {self.nproc} x {self.microbatch}")

    @property
    def accumulation(self) -> int:
        """Micro-batches per rank per optimiser step."""
        return self.batch_size // (self.nproc * self.microbatch)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, dataset_sha256: str) -> str:
        """Hash of everything that determines the trained weights (hyper-parameters + data)."""
        d = {k: v for k, v in self.to_dict().items() if k not in RUN_ONLY_KEYS}
        blob = json.dumps({"hparams": d, "dataset": dataset_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]
