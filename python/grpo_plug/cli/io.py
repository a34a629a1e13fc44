"""What every ``grpo-plug`` command shares: its two consoles and the one-line user error."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from grpo_plug.errors import GrpoPlugError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

USER_ERRORS: tuple[type[Exception], ...] = (GrpoPlugError,)


def user_errors(fn: F) -> F:
    """Turn known user errors into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            err.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
