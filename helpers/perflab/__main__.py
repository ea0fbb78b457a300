"""``python -m perflab`` runs the command-line interface."""

from perflab.cli import main

raise SystemExit(main())
