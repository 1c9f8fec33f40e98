"""Built-in plugins (importing this package registers them by type name)."""

from rastos.sched.plugins import filters, handlers, peers, pickers, producers, scorers

__all__ = ["filters", "handlers", "peers", "pickers", "producers", "scorers"]
