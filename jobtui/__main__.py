"""`python -m jobtui ...`: the same as the `jobtui` command."""

from jobtui.cli.main import main

main()
