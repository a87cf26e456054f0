"""How one object is downloaded: the knobs of a :class:`~s3sync.sync.transfer.download.Transfer`.

One frozen value (like s3transfer's ``TransferConfig``) instead of a keyword per knob
threaded through the constructor; built once from ``[sync]`` by
:meth:`TransferConfig.from_settings`, or spelled out by a test.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3sync.config import SyncSettings

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """Verification, the size cap and the ranged-download shape."""

    verify: bool = True  # check size and checksum before the rename (sync.verify_integrity)
    max_size: int | None = None  # bytes; bigger objects are skipped (sync.max_file_size_mb)
    multipart_threshold: int = 64 * MiB  # from this size on: parallel ranged GETs
    part_size: int = 16 * MiB
    part_concurrency: int = 8  # ranged GETs in flight for one object

    @classmethod
    def from_settings(cls, sync: SyncSettings) -> TransferConfig:
        return cls(
            verify=sync.verify_integrity,
            max_size=sync.max_file_size_bytes,
            multipart_threshold=int(sync.multipart_threshold_mb * MiB),
            part_size=int(sync.part_size_mb * MiB),
        )


__all__ = ["TransferConfig"]
