"""``python -m hermes_core``."""

from hermes_core.cli import main

main()
