"""The S3 client: one facade (bucket.py) over the lean signed path and the aioboto3 path."""
