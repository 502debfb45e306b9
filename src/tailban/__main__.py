from tailban.quick import main

raise SystemExit(main())
