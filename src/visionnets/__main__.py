from visionnets.cli import main

raise SystemExit(main())
