"""One module per benchmark family, each exposing `evaluate(data, encoder, key) -> BenchOutput`."""

from . import existence, mcq, referring, retrieval, zeroshot
from .base import BenchOutput

__all__ = ["BenchOutput", "existence", "mcq", "referring", "retrieval", "zeroshot"]
