"""The reconcile wing: a pass that makes the mirror equal the bucket, and its rules.

``march`` is the one sorted merge (listing x state rows, listing x local walk);
``plan`` turns it into typed items (fetch, adopt, skip, remove); ``conflicts`` flags
keys that cannot all be files; ``deletes`` decides the delete guards before anything is
removed; ``inventory_pass`` feeds a pass from S3 Inventory instead of a listing;
``reconciler`` runs a pass (the listing, the timeline, the outcome) over ``passstate``
(what a pass is asked and holds), ``items`` (one handler per plan item, through the
pool and the applier) and ``delete_step`` (the pass's deletes, guarded as a whole).
Grouped here because they change together and nothing else in ``sync/`` needs them but
the engine (the facade) and ``verify`` (which stands on the same merge).
"""
