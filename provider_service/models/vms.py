"""Placeholder: filled in by the vms work."""
