"""`python -m optout_mail` runs the command-line interface."""

from optout_mail.cli import main

main()
