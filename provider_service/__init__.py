"""vxgate provider_service."""
