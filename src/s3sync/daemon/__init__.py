"""The daemon: ``s3sync serve`` and everything it runs.

``serve`` is the process around the app (TLS, the listening socket, signals,
systemd notify, drain; the start-up check it runs, shared with the one-shot commands,
is :mod:`s3sync.s3.preflight`); ``systemd`` sd_notify and the watchdog; ``supervisor`` owns the engine,
the scheduler, the SQS consumer, hooks, jobs and SNS confirmation, one aiohttp
cleanup context each; ``app`` wires the supervisor to the web app of ``api/``.
The top of the layers but the CLI: ``api/`` and ``sources/`` never import it.
"""
