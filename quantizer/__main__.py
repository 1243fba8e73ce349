"""``python -m quantizer``: the same as the ``quantizer`` console script."""
import sys

from quantizer.entry import main

sys.exit(main())
