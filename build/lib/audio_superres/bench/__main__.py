from audio_superres.bench.cli import main

raise SystemExit(main())
