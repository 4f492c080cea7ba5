"""Settings: parsed and validated once, from the ``result_backend`` URL and ``app.conf``.

The names are the built-in ``gs://`` backend's (``gcs_bucket``, ``gcs_project``,
``gcs_base_path``, ``gcs_ttl``, ``gcs_threadpool_maxsize``, ``firestore_project``)
plus our own. A value in the URL's query wins over the same key in ``app.conf``,
as with the built-in backend. A misspelled key is an error, never ignored.
"""

from __future__ import annotations

import datetime as dt
import difflib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import conventions
from .errors import ConfigurationError
from .name_rules import bucket_problem, collection_problem, database_problem, project_problem

#: Every key this backend reads, with what it means. Keys are looked up in the
#: URL query first, then in ``app.conf``.
KNOWN_KEYS: dict[str, str] = {
    "gcs_bucket": "the bucket holding results (the URL's host)",
    "gcs_base_path": "a prefix for every object name (the URL's path)",
    "gcs_project": "the GCS project; inferred from the environment when unset",
    "gcs_ttl": "seconds until a result expires; overrides result_expires (0: use result_expires)",
    "gcs_threadpool_maxsize": "threads and HTTP connections used to read many results at once",
    "gcs_max_result_bytes": "largest encoded result stored; a larger one is a clear error",
    "gcs_timeout": "seconds one GCS or Firestore request may take",
    "gcs_retry_deadline": "seconds a call is retried for on throttling, 5xx or resets",
    "gcs_warm_up": "a worker process connects to GCS and Firestore at start, not on its first task (true/false)",
    "firestore_project": "the Firestore project; defaults to gcs_project",
    "firestore_database": "the Firestore database holding chord counters",
    "firestore_collection": "the Firestore collection holding chord counters",
}

#: Keys Celery's documentation of the built-in ``gs://`` backend puts in its URL
#: (``gs://bucket/prefix?gcs_project=p&ttl=600``), with the setting each means.
#: The built-in backend ignores them; here they mean what the documentation says.
URL_ALIASES: dict[str, str] = {"ttl": "gcs_ttl"}

E_UNKNOWN_KEY = "unknown setting {key!r} in {where}{hint}; known settings: {known}"
E_BAD_URL = "malformed result_backend URL {url!r}: {reason}. Expected gcs://BUCKET[/PREFIX][?key=value&...]"
E_BAD_EXPIRY = (
    "app.conf.{key} = {raw!r} is invalid: {problem}; give seconds (or a timedelta) of 0 or more "
    "(None or 0: results never expire)"
)

#: How a true/false setting may be written (in the URL's query it is text).
_FLAGS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}

#: Celery's own settings this backend honours, checked as strictly as gcs_ttl:
#: a negative one would write every result already expired, to read as PENDING.
CELERY_EXPIRY_KEYS = ("result_expires", "result_failure_expires")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the backend needs to know, validated."""

    bucket: str
    base_path: str = ""
    project: str | None = None
    ttl: float = 0.0
    threadpool_maxsize: int = conventions.THREADPOOL_MAXSIZE
    max_result_bytes: int = conventions.MAX_RESULT_BYTES
    timeout: float = 60.0
    retry_deadline: float = 120.0
    warm_up: bool = True
    firestore_project: str | None = None
    firestore_database: str = conventions.FIRESTORE_DATABASE
    firestore_collection: str = conventions.FIRESTORE_COLLECTION
    #: Where each value came from, for error messages.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def object_name(self, key: str) -> str:
        return f"{self.base_path}/{key}" if self.base_path else key


def parse(url: str | None, conf: Mapping[str, Any]) -> Settings:
    """Build validated settings from the backend URL and the app's configuration."""
    from_url = _parse_url(url) if url else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KNOWN_KEYS:
        if key in from_url:
            values[key], sources[key] = from_url[key], "result_backend URL"
        elif conf.get(key) not in (None, ""):
            values[key], sources[key] = conf.get(key), f"app.conf.{key}"
    _reject_unknown_conf_keys(conf)
    for key in CELERY_EXPIRY_KEYS:
        _check_expiry(key, conf.get(key))
    return _build(values, sources)


def _check_expiry(key: str, raw: Any) -> None:
    if raw is None:
        return
    try:
        seconds = raw.total_seconds() if isinstance(raw, dt.timedelta) else float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(E_BAD_EXPIRY.format(key=key, raw=raw, problem="not a number")) from None
    if seconds < 0:
        raise ConfigurationError(E_BAD_EXPIRY.format(key=key, raw=raw, problem="it is negative"))


def _parse_url(url: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != conventions.URL_SCHEME:
        raise ConfigurationError(E_BAD_URL.format(url=url, reason=f"scheme must be {conventions.URL_SCHEME}://"))
    if parts.username or parts.password or parts.port is not None or ":" in parts.netloc:
        raise ConfigurationError(E_BAD_URL.format(url=url, reason="no user, password or port belong in it"))
    if parts.fragment:
        raise ConfigurationError(E_BAD_URL.format(url=url, reason=f"unexpected fragment #{parts.fragment}"))
    # gcs:// alone is fine: drop-in users keep the bucket in app.conf.gcs_bucket.
    values: dict[str, str] = {"gcs_bucket": parts.netloc} if parts.netloc else {}
    path = urllib.parse.unquote(parts.path).strip("/")
    if path:
        values["gcs_base_path"] = path
    try:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(E_BAD_URL.format(url=url, reason=f"bad query string ({exc})")) from exc
    for key, value in query:
        if key in URL_ALIASES:
            if URL_ALIASES[key] in (k for k, _ in query):
                reason = f"{key} and {URL_ALIASES[key]} are the same setting; give {URL_ALIASES[key]} only"
                raise ConfigurationError(E_BAD_URL.format(url=url, reason=reason))
            key = URL_ALIASES[key]
        if key not in KNOWN_KEYS:
            raise ConfigurationError(_unknown(key, "the result_backend URL", URL_ALIASES))
        if key in ("gcs_bucket", "gcs_base_path"):
            raise ConfigurationError(
                E_BAD_URL.format(url=url, reason=f"{key} goes in the URL itself, not its query")
            )
        if key in values:
            raise ConfigurationError(E_BAD_URL.format(url=url, reason=f"{key} is given twice"))
        values[key] = value
    return values


def _reject_unknown_conf_keys(conf: Mapping[str, Any]) -> None:
    for key in list(conf.keys()):
        if key.startswith(("gcs_", "firestore_")) and key not in KNOWN_KEYS:
            raise ConfigurationError(_unknown(key, "app.conf"))


def _unknown(key: str, where: str, aliases: Iterable[str] = ()) -> str:
    close = difflib.get_close_matches(key, [*KNOWN_KEYS, *aliases], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return E_UNKNOWN_KEY.format(key=key, where=where, hint=hint, known=", ".join(KNOWN_KEYS))


def _build(values: dict[str, Any], sources: dict[str, str]) -> Settings:
    def named(key: str) -> str:
        return f"{key} (from {sources.get(key, 'defaults')})"

    def number(kind: type, minimum: float, strict: bool = False) -> Callable[[str, Any], Any]:
        def convert(key: str, raw: Any) -> Any:
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ConfigurationError(f"{named(key)} must be a {kind.__name__}, got {raw!r}") from None
            if value < minimum or (strict and value == minimum):
                bound = f"greater than {minimum}" if strict else f"at least {minimum}"
                raise ConfigurationError(f"{named(key)} must be {bound}, got {raw!r}")
            return value

        return convert

    def flag(key: str, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        value = str(raw).strip().lower()
        if value not in _FLAGS:
            raise ConfigurationError(f"{named(key)} must be true or false, got {raw!r}")
        return _FLAGS[value]

    def text(check: Callable[[str], str | None]) -> Callable[[str, Any], str]:
        def convert(key: str, raw: Any) -> str:
            value = str(raw).strip()
            problem = check(value)
            if problem:
                raise ConfigurationError(f"{named(key)} = {raw!r} is invalid: {problem}")
            return value

        return convert

    if "gcs_bucket" not in values:
        raise ConfigurationError(
            "no bucket configured: set result_backend = 'gcs://BUCKET[/PREFIX]' or app.conf.gcs_bucket"
        )
    converters: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
        "gcs_base_path": ("base_path", lambda _key, raw: str(raw).strip("/")),
        "gcs_project": ("project", text(project_problem)),
        "gcs_ttl": ("ttl", number(float, 0)),
        "gcs_threadpool_maxsize": ("threadpool_maxsize", number(int, 1)),
        "gcs_max_result_bytes": ("max_result_bytes", number(int, 1)),
        "gcs_timeout": ("timeout", number(float, 0, strict=True)),
        "gcs_retry_deadline": ("retry_deadline", number(float, 0, strict=True)),
        "gcs_warm_up": ("warm_up", flag),
        "firestore_project": ("firestore_project", text(project_problem)),
        "firestore_database": ("firestore_database", text(database_problem)),
        "firestore_collection": ("firestore_collection", text(collection_problem)),
    }
    fields: dict[str, Any] = {"bucket": text(bucket_problem)("gcs_bucket", values["gcs_bucket"])}
    for key, (name, convert) in converters.items():
        if key in values:
            fields[name] = convert(key, values[key])
    fields.setdefault("firestore_project", fields.get("project"))
    return Settings(**fields, sources=dict(sources))
