"""A stand-in for CloudStack's management server API, enough for the cs client to talk to."""
