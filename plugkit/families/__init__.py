"""plugkit's built-in model families (plugkit.families).

Each family is one module registered under the `plugkit.models` entry-point group in
pyproject.toml, exactly as a third-party family would be.
"""
