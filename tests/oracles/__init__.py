"""Independent reference models that archsim is checked against (tests/ is on sys.path: ``import oracles``)."""
