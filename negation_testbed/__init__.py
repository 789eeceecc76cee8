"""The offline synthetic testbed: the world (`world/`), its frozen models and measuring tools
(`instruments/`), the drop-in comparisons (`drop_in/`), diagnoses (`experiments/`), the recipe runner, the
demo and `compare` (docs/design.md, "The testbed's layout")."""

from .demo import run_demo
from .recipes import RECIPES, get_recipe
from .world.twins import METRIC_KEYS, build_suite, evaluate

__all__ = ["METRIC_KEYS", "RECIPES", "build_suite", "evaluate", "get_recipe", "run_demo"]
