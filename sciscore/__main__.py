from sciscore.cli import main

raise SystemExit(main())
