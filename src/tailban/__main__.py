from tailban.cli import main

raise SystemExit(main())
