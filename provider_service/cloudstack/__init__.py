"""CloudStack's NetworkOrchestrator commands, as the extension entry-point forwards them.

Each command arrives as CloudStack's envelope (protocol.md §2) and becomes calls to the
same parse functions and operations the REST API uses, inside one transaction.
"""
