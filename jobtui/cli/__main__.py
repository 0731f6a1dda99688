"""`python -m jobtui.cli ...` (how worker pools and the demo start their workers)."""

from jobtui.cli.main import main

main()
