"""A CloudStack management-server stand-in: its API, its extension element, its KVM agent."""
