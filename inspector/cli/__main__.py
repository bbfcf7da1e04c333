"""`python -m inspector.cli`."""

from . import main

main()
