from audio_superres.bench.core import main

raise SystemExit(main())
