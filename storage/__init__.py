"""Durable file operations shared by every artifact the project writes (model artifacts, indexes).

The lowest layer: it imports nothing of ours, so `models` and `engine` can both use it.
"""
from storage.atomic_dir import NotReplaceableError, atomic_directory, fsync_dir, fsync_tree
from storage.digest import file_sha256

__all__ = ["NotReplaceableError", "atomic_directory", "file_sha256", "fsync_dir", "fsync_tree"]
