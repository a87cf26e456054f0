"""The delete guards of a reconcile pass: decided once, before anything is removed.

A mirror tool's worst failure is a wrong delete, and the classic one is a
listing that is empty or nearly so because the configuration is wrong (a wrong
prefix, a copy-pasted bucket name; rclone#4298). Two guards run on the whole
pass before any delete is applied, and each refuses *all* deletes with one line
the operator can act on:

* **empty source**: the listing held no key in scope while the mirror holds
  files. Nothing is deleted unless ``--allow-empty-source`` says the bucket
  really is empty.
* **max_delete**: a count, or a percentage of the tracked files (default
  ``"50%"``); a pass that would delete more deletes nothing.

What the guards do not decide is whether each single delete is still right when
it is applied: that is re-checked per key by the worker that holds the key
(S3 is asked again, see ``Engine._remove``), so a key re-created since the
listing is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_DELETE = "50%"


def delete_limit(max_delete: int | str, tracked: int) -> int | None:
    """How many deletions one pass may make, or None for no limit (``-1``)."""
    if isinstance(max_delete, int):
        return None if max_delete < 0 else max_delete
    text = max_delete.strip()
    if text.endswith("%"):
        return int(tracked * float(text[:-1]) / 100.0)
    n = int(text)
    return None if n < 0 else n


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """What a pass found to delete, and what it knew when it decided."""

    victims: int  # deletes the pass would make
    tracked: int  # files the mirror holds in scope (tracked rows + untracked local files)
    listed: int  # keys the listing returned in scope
    scope: str = ""


def refusal(
    plan: DeletePlan, *, max_delete: int | str = DEFAULT_MAX_DELETE, allow_empty_source: bool = False
) -> tuple[str, str] | None:
    """None when the deletes may go ahead, else ``(code, one-line message)``."""
    if plan.victims <= 0:
        return None
    where = f"under prefix {plan.scope!r}" if plan.scope else "of the bucket"
    if plan.listed == 0 and not allow_empty_source:
        return (
            "empty_source",
            f"the listing {where} came back empty while the mirror holds {plan.tracked} files; "
            f"nothing deleted (pass --allow-empty-source if the bucket really is empty)",
        )
    limit = delete_limit(max_delete, plan.tracked)
    if limit is not None and plan.victims > limit:
        shown = max_delete if isinstance(max_delete, str) else str(max_delete)
        return (
            "max_delete",
            f"max_delete guard: would delete {plan.victims} of {plan.tracked} files, "
            f"limit is {limit} (max_delete = {shown}); nothing deleted",
        )
    return None


__all__ = ["DEFAULT_MAX_DELETE", "DeletePlan", "delete_limit", "refusal"]
