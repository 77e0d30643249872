"""Neural audio super-resolution: the 2017 U-Net and successors on Lightning + Hydra."""

from audio_superres.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()  # the configs' ${model_size:...} etc. resolve wherever they are composed
