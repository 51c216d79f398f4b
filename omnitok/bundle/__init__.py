"""Verified tokenizer bundles for air-gapped hosts: create on a connected machine, install offline."""

from .archive import create, inspect, verify
from .install import install
from .recipe import Recipe, load_recipe
from .records import installed

__all__ = ["Recipe", "create", "inspect", "install", "installed", "load_recipe", "pre_download", "verify"]


def pre_download(models: list[str], output: str = "tokenizers.tar.gz", **kwargs) -> str:
    """The spec's pre_download(models): gather these models' tokenizer files into a bundle."""
    return str(create(Recipe(name="custom", models=list(models)), output, **kwargs))
