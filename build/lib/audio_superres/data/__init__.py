"""Data: corpora (folder, VCTK, piano, demos), the decode-once cache and the LightningDataModule.

Exports are resolved lazily so that `import audio_superres.data.cache` (done by every decoding
worker process) does not pull in torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio_superres.data.corpora import AudioFile, Corpus, FolderCorpus
    from audio_superres.data.datamodule import SuperResDataModule
    from audio_superres.data.demo_piano import DemoPianoCorpus
    from audio_superres.data.demo_speech import DemoSpeechCorpus
    from audio_superres.data.piano import PianoCorpus
    from audio_superres.data.vctk import VCTKCorpus

__all__ = [
    "AudioFile",
    "Corpus",
    "DemoPianoCorpus",
    "DemoSpeechCorpus",
    "FolderCorpus",
    "PianoCorpus",
    "SuperResDataModule",
    "VCTKCorpus",
]

_WHERE = {
    "AudioFile": "corpora",
    "Corpus": "corpora",
    "FolderCorpus": "corpora",
    "DemoSpeechCorpus": "demo_speech",
    "DemoPianoCorpus": "demo_piano",
    "PianoCorpus": "piano",
    "VCTKCorpus": "vctk",
    "SuperResDataModule": "datamodule",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"audio_superres.data.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'audio_superres.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
