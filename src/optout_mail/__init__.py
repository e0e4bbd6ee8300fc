"""optout-mail: follow up your right-to-object requests to Meta from your mailbox."""

__version__ = "0.1.0"
