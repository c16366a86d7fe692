"""The PIFF model: bridge math (``bridge``), networks (``unet``, ``attention``, ``rain_encoder``,
``networks``), normalisation (``normalise``), physics loss (``physics``), EMA (``ema``), the
runner (``piff_model``: training objective and sampler) and the U-Net regression baseline
(``regression``)."""

from piff.model.bridge import NOISE_MODES, SAMPLERS, Bridge
from piff.model.config import PRESETS, ModelConfig
from piff.model.ema import EMA
from piff.model.networks import count_parameters
from piff.model.normalise import Normaliser
from piff.model.physics import continuity_residual, hourly_imbalance, physics_loss
from piff.model.piff_model import PIFFModel, build_model, sample, training_loss
from piff.model.rain_encoder import RainfallEncoder
from piff.model.regression import RegressionModel, predict, regression_loss
from piff.model.unet import UNet

__all__ = [
    "NOISE_MODES", "SAMPLERS", "Bridge", "PRESETS", "ModelConfig", "EMA", "count_parameters", "Normaliser",
    "continuity_residual", "hourly_imbalance", "physics_loss", "PIFFModel", "build_model", "sample",
    "training_loss", "RainfallEncoder", "RegressionModel", "predict", "regression_loss", "UNet",
]
