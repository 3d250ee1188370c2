"""vxgate plugin."""
