"""Persistence: SQLModel tables, the engine, and loaders that feed the staging core."""
