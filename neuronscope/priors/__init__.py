"""Learned natural-image priors: a noise-conditional denoiser trained on real photos (PPGN-x's prior)."""

from .denoiser import Denoiser, load_denoiser, shipped_denoiser_path
from .step import DenoisingPrior

__all__ = ["Denoiser", "DenoisingPrior", "load_denoiser", "shipped_denoiser_path"]
