"""Keyword arguments renamed for one release: the old name fails with a message naming the new one.

Example:
    >>> @renamed(num_inference_steps="steps")
    ... def run(steps=None):
    ...     return steps
    >>> run(num_inference_steps=3)
    Traceback (most recent call last):
    TypeError: run(num_inference_steps=) is now run(steps=)
"""

from __future__ import annotations

import functools
from typing import Callable


def renamed(**old_to_new: str) -> Callable:
    """Decorator: calling the function with an old keyword raises TypeError naming its new one."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    raise TypeError(f"{fn.__name__}({old}=) is now {fn.__name__}({new}=)")
            return fn(*args, **kwargs)
        return inner
    return wrap


def check_count(name: str, value, window: str = "at_steps") -> None:
    """TypeError when `value`, now a number of steps, is given as the window or step list it used to be."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name}= is now the number of sampling steps; the steps it used to name are {window}= "
                        f"(got {value!r})")
