"""Generator priors: a generator network that inverts a classifier layer, and
the searches and samplers in its code space (DGN-AM, PPGN, inpainting).

``Generator`` (base.py) is the interface; ``train.py`` trains one for any
classifier; ``shipped.load_shipped()`` loads the generator trained for
EfficientNet-Lite0 that ships with neuronscope.
"""

from .base import CodeSpec, CodeStats, Generator, encode

__all__ = ["CodeSpec", "CodeStats", "Generator", "encode"]
