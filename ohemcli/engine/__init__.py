"""Training, inference and evaluation: the engine room behind the CLI."""
