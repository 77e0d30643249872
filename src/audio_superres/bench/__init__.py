"""Every benchmark, one command: `python -m audio_superres.bench ...` (`make bench`)."""
