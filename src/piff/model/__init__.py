"""The PIFF model: bridge math (``bridge``), networks (``unet``, ``attention``, ``rain_encoder``,
``networks``), normalisation (``normalise``), physics loss (``physics``), EMA (``ema``), the
runner (``piff_model``: training objective and sampler) and the U-Net regression baseline
(``regression``)."""

from piff.model.bridge import Bridge
from piff.model.config import PRESETS, ModelConfig
from piff.model.ema import EMA
from piff.model.networks import count_parameters
from piff.model.normalise import Normaliser
from piff.model.physics import hourly_imbalance, physics_loss
from piff.model.piff_model import PIFFModel, build_model, sample, training_loss
from piff.model.rain_encoder import RainfallEncoder
from piff.model.regression import RegressionModel, regress, regression_loss
from piff.model.unet import UNet

__all__ = [
    "Bridge", "PRESETS", "ModelConfig", "EMA", "count_parameters", "Normaliser",
    "hourly_imbalance", "physics_loss", "PIFFModel", "build_model", "sample",
    "training_loss", "RainfallEncoder", "RegressionModel", "regress", "regression_loss", "UNet",
]
