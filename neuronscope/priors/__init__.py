"""Learned natural-image priors: a noise-conditional denoiser trained on real photos (PPGN-x's prior)."""

from .denoiser import Denoiser, load_denoiser, shipped_denoiser_path
from .step import DenoisingPrior, as_prior

__all__ = ["Denoiser", "DenoisingPrior", "as_prior", "load_denoiser", "shipped_denoiser_path"]
