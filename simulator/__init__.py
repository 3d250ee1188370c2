"""vxgate simulator."""
