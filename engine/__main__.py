"""``python -m engine`` is ``kairos``."""

from engine.cli import main

main()
