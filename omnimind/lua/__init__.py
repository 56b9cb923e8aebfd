"""OmniMind's Redis scripts, one ``.lua`` file each, read once per process.

>>> "redis.call" in source("experience_append")
True
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def source(name: str) -> str:
    """The text of ``omnimind/lua/<name>.lua``."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
