"""Neural audio super-resolution: the 2017 U-Net and successors on Lightning + Hydra."""

__version__ = "0.1.0"
