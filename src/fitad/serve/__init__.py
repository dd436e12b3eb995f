"""The ad service's library side: everything the BentoML service in ``serving/`` needs, as plain Python.

* :mod:`fitad.serve.config` -- :class:`ServeConfig` (``serve:`` section of params.yaml).
* :mod:`fitad.serve.errors` -- :class:`ApiError`: status, code, a message naming the field; JSON body.
* :mod:`fitad.serve.requests` -- typed, bounded request models and :func:`validate`.
* :mod:`fitad.serve.uploads` -- uploaded images through the project's one image loader, limits as 4xx.
* :mod:`fitad.serve.auth` -- hashed API keys with tiers, constant-time comparison.
* :mod:`fitad.serve.quota` -- the free tier's daily image quota in SQLite.
* :mod:`fitad.serve.middleware` -- plain ASGI middleware: body limit before the body is read, request ids,
  JSON errors without tracebacks.
* :mod:`fitad.serve.core` -- rendering, the approved-model watcher, tasks.

Nothing here imports bentoml (the service imports fitad, never the reverse); this package imports nothing
heavy at import time.
"""
