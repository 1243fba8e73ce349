"""Re-pin figures.json after a deliberate change to the simulator's numbers: ``python tests/data/pinned/repin.py``."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# the repository first (its quantizer package, not the tests' quantizer/ folder), then tests/ for the test module
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

from test_pinned_figures import repin  # noqa: E402

repin()
