"""Orchestration, apart from the science: the headless runner and its executors, the scorecard,
the benchmarks, the workshop builder and the ``decoylab`` command line."""
