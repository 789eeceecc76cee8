"""The offline synthetic world: scenes, captions, oracle backends, benchmark twins, the demo."""

from .demo import run_demo
from .recipes import RECIPES, get_recipe
from .world.twins import METRIC_KEYS, build_suite, evaluate

__all__ = ["METRIC_KEYS", "RECIPES", "build_suite", "evaluate", "get_recipe", "run_demo"]
