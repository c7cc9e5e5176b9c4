"""The engines wafs ships. Each module imports its third-party client lazily."""
