"""Jinja2 templates of FRR's integrated frr.conf, one per config section (see README.md)."""
