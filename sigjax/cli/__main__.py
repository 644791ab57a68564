from sigjax.cli import main

raise SystemExit(main())
