"""The distribution example: streamq as the job queue of a social-media distribution backend.

* :mod:`~examples.distribution.service` — ``QueueService`` / ``AsyncQueueService``, the
  backend's facade over three queues and four job types;
* :mod:`~examples.distribution.types` — typed, validated job data;
* :mod:`~examples.distribution.limits` — the job keys and the flow-control limits declared
  on them (per platform, per connection, one token refresh at a time);
* :mod:`~examples.distribution.app` — the worker's handlers
  (``python -m streamq.worker examples.distribution.app:app``);
* :mod:`~examples.distribution.platforms` — a simulated platform that fails, stalls and
  rate-limits on purpose; :mod:`~examples.distribution.db` — results in SQLite;
* :mod:`~examples.distribution.web` — the generic web app plus the admin dispatch route
  (``uvicorn examples.distribution.web:app``);
* :mod:`~examples.distribution.demo` — ``make demo``, with its embedded server (a data
  directory per server kind: :mod:`~examples.distribution.embedded`) and its live view
  (the queues' events streams: :mod:`~examples.distribution.live`).

Nothing is imported here, so importing one module does not drag in the web stack.
"""
