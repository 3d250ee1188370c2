"""vxgate agent."""
