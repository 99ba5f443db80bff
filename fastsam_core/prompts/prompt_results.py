"""Moved: `PromptResults` lives in `fastsam_core.results` beside `Results` (issue 11).

Kept only so `prompts/__init__.py` and `prompts/apply.py` import while their owner switches them
to `from fastsam_core.results import PromptResults`; delete this file then.
"""

from fastsam_core.results import PromptResults

__all__ = ["PromptResults"]
