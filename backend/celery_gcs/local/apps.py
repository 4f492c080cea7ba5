"""Celery apps configured from the environment, as the local stack's workers load them.

A worker started by the launcher (``local.worker``) gets its broker and
backend as ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND``, and any
further settings as JSON in a variable the app names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from celery import Celery


def app_from_env(
    main: str,
    *,
    conf_var: str | None = None,
    env: Mapping[str, str] = os.environ,
    set_as_current: bool = True,
    **settings: Any,
) -> Celery:
    """A Celery app with the broker and backend from ``env``, then ``settings``, then ``conf_var``'s JSON."""
    from_var = json.loads(env.get(conf_var) or "{}") if conf_var else {}
    app = Celery(main, set_as_current=set_as_current)
    base = {
        "broker_url": env.get("CELERY_BROKER_URL"),
        "result_backend": env.get("CELERY_RESULT_BACKEND"),
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
    }
    app.conf.update({**base, **settings, **from_var})
    return app
