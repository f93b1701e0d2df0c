"""Evaluation people can trust: prompt sets with seeds, a resumable runner, metric adapters, and the baselines.

Example:
    >>> import cadiff
    >>> from cadiff.evaluation import evaluate, load_prompts
    >>> pipe = cadiff.load_pipeline()
    >>> evaluate(pipe, load_prompts("shapes"), "runs/eval-base")["metrics"]["shapes"]["accuracy"]   # doctest: +SKIP
"""

from cadiff.evaluation.prompts import PromptRow, PromptSet, load_prompts, shapes_prompts
from cadiff.evaluation.runner import EvaluationConfig, ResultsMismatchError, evaluate, file_sha256, read_rows

__all__ = ["EvaluationConfig", "PromptRow", "PromptSet", "ResultsMismatchError", "evaluate", "file_sha256",
           "load_prompts", "read_rows", "shapes_prompts"]
