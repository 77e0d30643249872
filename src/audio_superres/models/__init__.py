"""Models: plain nn.Modules mapping a low-res `(B, m)` waveform to high-res `(B, m * ratio)`."""

from audio_superres.models.apbwe import APBWE
from audio_superres.models.audiounet import AudioUNet
from audio_superres.models.base import SuperResModel
from audio_superres.models.cubic import CubicBaseline
from audio_superres.models.dnn import DNNBaseline
from audio_superres.models.tfilm import TFiLM, TFiLMUNet

__all__ = [
    "APBWE",
    "AudioUNet",
    "CubicBaseline",
    "DNNBaseline",
    "SuperResModel",
    "TFiLM",
    "TFiLMUNet",
]
