"""``python -m archsim`` runs the CLI."""
import sys

from archsim.cli import main

sys.exit(main())
