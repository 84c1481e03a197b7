"""``python -m benchmarks.throughput``: the command line of :mod:`benchmarks.throughput`.

Runs :func:`benchmarks.throughput.main` imported from the package, not code defined here:
workers import the apps by their package names (a function of ``__main__`` would be
pickled by value, without its module's globals)."""

from benchmarks.throughput import main

main()
