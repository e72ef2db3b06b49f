"""`python -m decoylab ...` is the same as the `decoylab` command."""
from decoylab.tools.cli import main

raise SystemExit(main())
