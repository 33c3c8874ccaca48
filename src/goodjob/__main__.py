"""``python -m goodjob``: the same as the ``goodjob`` command."""

from goodjob.cli import main

main()
