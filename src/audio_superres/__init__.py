"""Neural audio super-resolution: the 2017 U-Net and successors on Lightning + Hydra."""

from audio_superres.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()  # the configs' ${model_size:...} etc. resolve wherever they are composed

__all__ = ["SuperResolver", "__version__"]


def __getattr__(name: str) -> object:
    """`audio_superres.SuperResolver`, imported on first use (torch is not loaded by the bare
    package import)."""
    if name == "SuperResolver":
        from audio_superres.resolver import SuperResolver

        return SuperResolver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
