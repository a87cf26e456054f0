"""The transfer wing: one object from S3 into the mirror, verified, within the limits.

``download`` is the transfer itself (single GET or parallel ranged parts, bounded
retries, the atomic rename); ``integrity`` decides how the bytes are verified from
what S3 said about the object, and ``hashing`` feeds them to that check, from the
stream or from the temp file; ``throttle`` is the process-wide ``--bwlimit``;
``admission`` bounds how many downloads and bytes are in flight; ``resume`` is the
ranged download's side of resuming a big object (the sidecar it keeps on disk is
:mod:`s3sync.local.sidecars`). The pool and the apply rules are the only users.
"""
