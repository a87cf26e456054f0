"""libc functions ``os`` has no binding for (``syncfs``, ``sync_file_range``), through ctypes.

One loader for both, so each caller only says which function and its C signature,
and "missing" (not Linux, an old libc) has one meaning: :func:`function` returns None.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    # dlopen(NULL): the symbols the interpreter already has, libc among them. Not
    # ctypes.util.find_library("c"), which runs `ldconfig -p` in a child process on
    # every start (a fork and an exec in each one-shot `sync`).
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


@functools.cache
def function(name: str, *argtypes: Any) -> Any | None:
    """libc's ``name`` returning a C int, with ``argtypes``; None where there is no such function."""
    libc = _libc()
    if libc is None:
        return None
    try:
        fn = getattr(libc, name)
    except AttributeError:
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn


def raise_errno() -> None:
    """Raise the OSError for the errno the last call through :func:`function` left."""
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))


__all__ = ["function", "raise_errno"]
