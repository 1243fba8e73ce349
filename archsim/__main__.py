"""``python -m archsim`` runs the CLI."""
import sys

from archsim.entry import main

sys.exit(main())
