"""A trained model loaded for inference, and the one prediction call every user goes through.

``load_trained(path)`` rebuilds the network a ``model.pt`` describes (written by the training
loop, ``piff.training.train.write_outputs``) with its EMA weights, its normaliser and its bridge.
:meth:`TrainedModel.predict` dispatches between the kinds: the PIFF bridge is sampled with
exactly ``nfe`` network evaluations, the U-Net regression baseline runs once. Sampling the test
set (``piff.inference.sampling``), ``piff predict`` and the benchmarks all call it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from piff.choices import DEFAULT_ANCHOR_SHARE, DEFAULT_PRECISION, PRECISIONS, rename_legacy_keys
from piff.errors import PiffInputError
from piff.model.bridge import Bridge
from piff.model.config import ModelConfig
from piff.model.ema import EMA
from piff.model.normalise import Normaliser
from piff.model.piff_model import build_model, sample
from piff.model.regression import regress
from piff.model.store import load_checkpoint


@dataclass
class TrainedModel:
    """A model.pt loaded for inference, with the EMA weights in the network."""

    model: torch.nn.Module
    bridge: Bridge
    normaliser: Normaliser
    kind: str  # piff | regression (piff.choices.TRAINED_KINDS)
    meta: dict
    path: Path

    @property
    def cell_size_m(self) -> float:
        return float(self.meta["cell_size_m"])

    @property
    def experiment(self) -> dict:
        """The experiment options it was trained with (``ExperimentConfig.to_dict``)."""
        return rename_legacy_keys(self.meta["train_config"])

    @property
    def prior(self) -> str:
        """Which prior map the network was conditioned on (``spm`` or ``coarse``), or ``none``."""
        return self.experiment.get("prior", "spm") if self.model.config.use_prior else "none"

    @property
    def rain_max_mm_per_h(self) -> float | None:
        """The largest hourly intensity of the training storms (None for files of earlier versions)."""
        value = self.meta.get("rain_max_mm_per_h")
        return None if value is None else float(value)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @contextmanager
    def inference(self, attention_window: tuple[int, int] | None = None,
                  precision: str = DEFAULT_PRECISION) -> Iterator[None]:
        """The fast path for many predictions: ``torch.inference_mode`` and, on the CPU,
        channels_last weights (oneDNN's native layout). Measured: the tiny preset predicted a
        256 x 256 DEM 12 % faster whole and 34 % faster tiled; the demo ``phy`` model sampled
        the demo test set (NFE 1 and 10) 26 % faster; maps differ from the default layout's by
        < 2e-6 m (docs/benchmarks.md). The weights are converted on the first call and stay so:
        converting them there and back cost ~20 ms a call, a sixth of a 256 x 256 map.

        ``attention_window``: map cells (h, w) within which self-attention runs on larger maps
        (``ConditionedNet.attention_windows``; ``piff.inference.predict.inference_plan``
        chooses it); None: attention over the whole map.

        ``precision`` (``piff.choices.PRECISIONS``): the network under bfloat16 autocast or in
        float32; ``auto`` is bf16 where the device computes it natively (:func:`inference_dtype`).
        The U-Net's output layer stays in float32 under autocast, so the depth keeps float32
        resolution (bf16 would round 1 m of depth to 4 mm)."""
        dtype = inference_dtype(precision, self.device)
        autocast = (torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext())
        with torch.inference_mode(), self.model.attention_windows(attention_window), autocast:
            # the first convolution's weight stands for all: they are converted together
            first = next((w for w in self.model.parameters() if w.dim() == 4), None)
            if self.device.type == "cpu" and first is not None \
                    and not first.is_contiguous(memory_format=torch.channels_last):
                self.model.to(memory_format=torch.channels_last)
            yield

    @torch.no_grad()
    def predict(self, elevation: torch.Tensor, prior: torch.Tensor | None, rain_window: torch.Tensor, *,
                nfe: int = 10, sampler: str = "euler",
                generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Depth maps (B, 1, H, W) [m], clamped >= 0, from the DEM (B, 1, H, W) [m], the prior map
        (B, 1, H, W) [m] (None for a model without one) and the rain windows (B, 24) [mm/h].

        ``nfe``, ``sampler`` and ``generator`` (on the model's device; or B of them, one per map,
        see ``Bridge.sample``) drive the bridge; the regression kind ignores them (one network
        evaluation)."""
        if self.kind == "regression":
            return regress(self.model, self.normaliser, elevation, prior, rain_window)
        return sample(self.model, self.bridge, self.normaliser, elevation, prior, rain_window, nfe=int(nfe),
                      method=sampler, generator=generator)


def native_bf16(device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions and matrix products natively: a CUDA GPU
    that supports bf16, or a CPU with AMX tiles or AVX-512 BF16 (oneDNN's bf16 kernels; without
    them oneDNN has no bf16 instructions to run, so float32 is the safe choice)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:  # private but stable since torch 2.1; an older or other build says no
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


def inference_dtype(precision: str, device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: float32 throughout)."""
    if precision not in PRECISIONS:
        raise PiffInputError("--precision", f"{precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def network_precision(precision: str, device) -> str:
    """What ``precision`` means on ``device``, for output metadata: ``bfloat16 autocast`` or ``float32``."""
    return "bfloat16 autocast" if inference_dtype(precision, device) is not None else "float32"


def resolve_device(device) -> torch.device:
    """``"auto"``: the first CUDA GPU if there is one, else the CPU; otherwise the named device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_trained(path, device="cpu", use_ema: bool = True) -> TrainedModel:
    """Rebuild the network of a ``model.pt`` and load its weights (the EMA's by default)."""
    path = Path(path)
    if not path.exists():
        raise PiffInputError(path, "model file does not exist")
    payload = load_checkpoint(path, map_location="cpu")
    meta = payload.get("piff") if isinstance(payload, dict) else None
    if not meta or "model_config" not in meta or "normaliser" not in meta:
        raise PiffInputError(path, "not a piff model file (no 'piff' metadata)")
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        # the bridge settings: noise and sigma stored since the first version (also part of the
        # experiment), prediction, prior_residual and time_sampling since issue 12 (anchor_share later); a file
        # without them is the paper's velocity bridge, as it was trained
        bridge_opts = meta.get("bridge") or {k: meta["train_config"][k] for k in ("noise", "sigma")}
        bridge = Bridge(bridge_opts["noise"], float(bridge_opts["sigma"]),
                        prediction=bridge_opts.get("prediction", "velocity"),
                        prior_residual=bool(bridge_opts.get("prior_residual", False)),
                        time_sampling=bridge_opts.get("time_sampling", "uniform"),
                        anchor_share=float(bridge_opts.get("anchor_share", DEFAULT_ANCHOR_SHARE)))
        if bridge.prior_residual and not config.use_prior:
            raise ValueError("prior_residual without a prior channel (use_prior is false)")
        normaliser = Normaliser.from_state_dict(meta["normaliser"])
    except (KeyError, TypeError, ValueError) as err:
        raise PiffInputError(path, f"damaged piff metadata ({type(err).__name__}: {err})") from err
    model = build_model(config)
    ema = EMA(model, 0.0)  # the decay only matters for training
    try:
        model.net.load_state_dict(payload["net"])
        model.rain_encoder.load_state_dict(payload["embedding"])
        ema.load_state_dict(payload["ema"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise PiffInputError(path, f"weights do not match the saved model config ({err})") from err
    if use_ema:
        ema.copy_to()
    model.to(device).eval()
    return TrainedModel(model, bridge, normaliser, config.kind, meta, path)
