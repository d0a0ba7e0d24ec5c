"""`python -m infrawatch` runs the CLI."""

from infrawatch.cli import main

raise SystemExit(main())
