"""Design-space sweeps: a sweep file or --grid flags -> points -> runs on a local pool or a Dask cluster -> one table,
a Pareto set and its plot. ``archsim sweep`` is the CLI over :func:`run_sweep`."""
from archsim.sweep.run import SweepOutcome, run_sweep
from archsim.sweep.spec import SweepSpec, load_sweep

__all__ = ["SweepOutcome", "SweepSpec", "load_sweep", "run_sweep"]
