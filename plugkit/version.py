"""The package version (pyproject.toml says the same): importable without the rest of plugkit."""

__version__ = "0.2.0"
