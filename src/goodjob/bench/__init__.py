"""``goodjob bench``: the scenarios of issue 5, the plain SKIP LOCKED baseline, and the runner.

- :mod:`goodjob.bench.baseline` — the simplest correct plain-psycopg queue, the yardstick.
- :mod:`goodjob.bench.workload` — the tasks the benchmark's workers run.
- :mod:`goodjob.bench.environment` — fresh databases, worker processes, waiting.
- :mod:`goodjob.bench.scenarios` — enqueue, drain and latency measurements.
- :mod:`goodjob.bench.history` — the history scenario's seeded table (UUIDv7 ids).
- :mod:`goodjob.bench.rounds` — alternating blocks and the median of repeated rounds.
- :mod:`goodjob.bench.recovery` — SIGKILL recovery time and its exactly-once proof.
- :mod:`goodjob.bench.runner` — runs them, reports JSON lines and a table with ratios.

The benchmark talks to Postgres with psycopg directly (not through ``goodjob.db``): the baseline
must be plain psycopg by definition, and the measurements read goodjob's tables from outside,
as an operator would.
"""
