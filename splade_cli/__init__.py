"""`splade-serve`: one installed command over the project's `python -m` entry points (see main.py)."""
