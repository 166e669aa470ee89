from stumpcast.cli import main

raise SystemExit(main())
