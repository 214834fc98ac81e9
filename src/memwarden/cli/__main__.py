"""``python -m memwarden.cli``."""

from memwarden.cli import run_main

run_main()
