"""``python -m memwarden``."""

from memwarden.cli import run_main

run_main()
