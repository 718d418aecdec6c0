from cph_exporter.cli import main

raise SystemExit(main())
