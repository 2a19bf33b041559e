"""The built-in policy families; every module here is imported by the registry (``robostack.policies.registry``)."""
