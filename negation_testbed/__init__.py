"""The offline synthetic world: scenes, captions, oracle backends, benchmark twins, the demo."""

from .benchmarks import METRIC_KEYS, build_suite, evaluate
from .demo import run_demo
from .recipes import RECIPES, get_recipe

__all__ = ["METRIC_KEYS", "RECIPES", "build_suite", "evaluate", "get_recipe", "run_demo"]
