"""The sync core: queue, worker pool, apply rules, transfer, merge, reconcile, verify."""
