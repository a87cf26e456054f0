"""The transfer wing: one object from S3 into the mirror, verified, within the limits.

A download runs one way down the wing. ``download`` decides the shape of an attempt
(bounded retries, a 412 restarts on the new ETag; what the object is; small, streamed
or ranged) and calls each of the next two once: ``verifier`` decides how the bytes
are checked (by ``integrity``'s rules, S3's word on the part layout) and judges them;
``receive`` takes the bytes into place (the GET behind ``throttle``, the process-wide
``--bwlimit``; writes, hashing, the rename, the resumable ranged temp of ``resume``,
whose sidecar on disk is :mod:`s3sync.local.sidecars`). ``admission`` bounds how many
downloads and bytes are in flight. The pool and the apply rules are the only users.
"""
