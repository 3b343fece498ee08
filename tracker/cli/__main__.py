"""`python -m tracker.cli ...` runs `ho-tracker ...`."""

from tracker.cli import main

main()
