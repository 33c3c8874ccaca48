"""``goodjob bench`` as a script: ``python benchmarks/bench.py --jobs 2000 --quick``.

The scenarios live in ``goodjob.bench`` (so an installed goodjob can measure any database);
this file only gives the Makefile's ``benchmarks/`` folder its entry point.
"""

from goodjob.cli.bench import bench

if __name__ == "__main__":
    bench()
