"""`python -m decoylab ...` is the same as the `decoylab` command."""
from decoylab.cli import main

raise SystemExit(main())
