from steering.cli import main

raise SystemExit(main())
