"""What a GET hands back, whichever path served it: a status, lower-case headers, a body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from s3sync.model import ObjectMeta


class Body(Protocol):
    """What a transfer needs from a GET response body."""

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class GetResult:
    """A GET in progress: status 200/206 with a body, or 304 (not modified)."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    body: Body | None
    meta: ObjectMeta | None

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
