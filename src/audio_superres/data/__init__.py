"""Data: corpora, the decode-once cache, the demo speech corpus and the LightningDataModule.

Exports are resolved lazily so that `import audio_superres.data.cache` (done by every decoding
worker process) does not pull in torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio_superres.data.corpora import AudioFile, Corpus, FolderCorpus
    from audio_superres.data.datamodule import SuperResDataModule
    from audio_superres.data.demo_speech import DemoSpeechCorpus

__all__ = ["AudioFile", "Corpus", "DemoSpeechCorpus", "FolderCorpus", "SuperResDataModule"]

_WHERE = {
    "AudioFile": "corpora",
    "Corpus": "corpora",
    "FolderCorpus": "corpora",
    "DemoSpeechCorpus": "demo_speech",
    "SuperResDataModule": "datamodule",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"audio_superres.data.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'audio_superres.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
