"""Downstream text-to-image evaluation: Neg Score and a TIFA-style score for any diffusers pipeline.

Prompt sets (`prompts`), VQA judges (`judges`), the arms and seeded generation (`generation`), the
resumable generate-then-judge loop (`runner`), Neg Score (`negscore`), TIFA (`tifa`), the scoring rule
and bootstrap (`scoring`, pure functions), and reports (`report`). The rules are docs/design.md's.
"""

from .api import T2IConfig, run
from .generation import ARMS, Arm, ArmSwitcher, GenerationConfig, arm_prompt, load_pipeline, parse_arms
from .judges import BlipJudge, Judge, VLMJudge, load_judge
from .negscore import NegScoreConfig, run_negscore, summarize
from .prompts import BUILTIN_SETS, PromptItem, PromptSet, load_prompts, splitter_agreement
from .report import image_grid, markdown_table, tifa_table, write_summary
from .runner import prepare_out_dir
from .scoring import bootstrap_mean, image_score, is_yes, paired_difference, tifa_aggregate
from .tifa import TifaQuestion, load_tifa_questions, run_tifa, score_images

__all__ = [
    "ARMS", "T2IConfig", "run", "Arm", "ArmSwitcher", "BUILTIN_SETS", "BlipJudge", "GenerationConfig", "Judge", "NegScoreConfig",
    "PromptItem", "PromptSet", "TifaQuestion", "VLMJudge", "arm_prompt", "bootstrap_mean", "image_grid",
    "image_score", "is_yes", "load_judge", "load_pipeline", "load_prompts", "load_tifa_questions",
    "markdown_table", "paired_difference", "parse_arms", "prepare_out_dir", "run_negscore", "run_tifa",
    "score_images", "splitter_agreement", "summarize", "tifa_aggregate", "tifa_table", "write_summary",
]
