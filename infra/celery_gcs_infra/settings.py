"""Stack config in, validated :class:`CeleryStackArgs` out: the program's only edge.

:data:`OPTIONS` lists every ``celery-gcs:*`` key with its type, default and
description; ``Pulumi.yaml`` declares the same keys (a test keeps the two
equal), and the defaults come from the argument dataclasses themselves.

Every problem is a :class:`ConfigError` naming the config key and the fix:
missing required keys, values of the wrong type, unknown (misspelled) keys,
a broker URL not stored as a secret, and whatever the argument dataclasses
reject.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .common import SettingError
from .stack import CeleryStackArgs
from .worker import WorkerSettings

NAMESPACE = "celery-gcs"

E_MISSING = "is required and not set"
E_UNKNOWN = "is not a celery-gcs setting"
E_NOT_SECRET = "holds a password and must be stored encrypted"


class ConfigError(ValueError):
    """A stack config value is missing, malformed or unusable."""

    def __init__(
        self, key: str, problem: str, fix: str, *, secret: bool = False, settable: bool = True
    ) -> None:
        self.key = f"{NAMESPACE}:{key}"
        self.problem = problem
        message = f"{self.key} {problem}. {fix}."
        if settable:
            flag = "--secret " if secret else ""
            message += f" Set it with: pulumi config set {flag}{self.key} VALUE"
        super().__init__(message)


@dataclass(frozen=True)
class Option:
    """One config key: ``kind`` is str, int or bool; ``default`` None means required."""

    key: str
    kind: type
    default: Any
    description: str
    #: Where the value goes: CeleryStackArgs or its WorkerSettings.
    target: type = CeleryStackArgs
    secret: bool = False

    @property
    def field(self) -> str:
        return snake(self.key)


def snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return ",".join(f.default) if isinstance(f.default, tuple) else f.default
            return None
    raise KeyError(name)


def _stack(key: str, kind: type, description: str, **kw: Any) -> Option:
    return Option(key, kind, _default(CeleryStackArgs, snake(key)), description, **kw)


def _worker(key: str, kind: type, description: str) -> Option:
    return Option(key, kind, _default(WorkerSettings, snake(key)), description, WorkerSettings)


OPTIONS: tuple[Option, ...] = (
    _stack("project", str, "Google Cloud project ID to deploy into."),
    _stack(
        "region",
        str,
        "Region of the cluster, broker, registry, and default location "
        "of the bucket and database (for example europe-west1).",
    ),
    Option(
        "prefix",
        str,
        "",
        "Prefix of resource names (at most 23 characters); empty: celery-STACK-HASH, HASH from the "
        "Pulumi organization, project and stack, so two teams' stacks of one name never share names.",
    ),
    _stack(
        "protect",
        bool,
        "Production protection: Firestore delete protection and "
        "point-in-time recovery, deletion protection on the cluster and Redis, Pulumi "
        "protect on stateful resources. false makes the stack fully destroyable.",
    ),
    _stack("bucketName", str, "Result bucket name; empty: PROJECT-PREFIX-results."),
    _stack("bucketLocation", str, "Result bucket location; empty: the region."),
    _stack("basePath", str, "Key prefix inside the bucket (the result URL's path); empty: none."),
    _stack(
        "kmsKeyName",
        str,
        "Cloud KMS key (projects/P/locations/L/keyRings/R/"
        "cryptoKeys/K) to encrypt results with; empty: Google-managed encryption.",
    ),
    _stack(
        "firestoreDatabase",
        str,
        "Firestore database ID for chord counters; empty: PREFIX-chords, the stack's own "
        "((default) only when set explicitly).",
    ),
    _stack(
        "firestoreCollection",
        str,
        "Firestore collection of chord documents (the backend's firestore_collection); "
        "the result backend URL names it and TTL policies cover it and its parts.",
    ),
    _stack(
        "firestoreLocation",
        str,
        "Firestore location (region or multi-region such as eur3); empty: the region.",
    ),
    _stack(
        "broker", str, "memorystore (create Memorystore for Redis) or external (use brokerUrl)."
    ),
    _stack(
        "brokerUrl",
        str,
        "External broker URL (redis:// or rediss://), set with "
        "--secret; only with broker external.",
        secret=True,
    ),
    _stack(
        "redisTier",
        str,
        "Memorystore tier: BASIC or STANDARD_HA; empty: STANDARD_HA on protected stacks "
        "(which refuse BASIC), BASIC otherwise.",
    ),
    _stack("redisMemoryGb", int, "Memorystore capacity in GB."),
    _stack("redisVersion", str, "Memorystore Redis version."),
    _stack(
        "redisConnectMode",
        str,
        "Memorystore connect mode: DIRECT_PEERING, or PRIVATE_SERVICE_ACCESS (required on another "
        "project's network: a Shared VPC, an existing cluster in another project; the stack makes "
        "the connection on its own VPC); empty: chosen from the network's project.",
    ),
    _stack(
        "redisMaintenanceWindow",
        str,
        "Memorystore's weekly maintenance window, DAY HH:00 in UTC (windows start on the hour).",
    ),
    _stack(
        "cluster",
        str,
        "Name of an existing GKE cluster (Workload Identity on) to "
        "deploy into; empty: create an Autopilot cluster named PREFIX.",
    ),
    _stack(
        "clusterLocation",
        str,
        "Location of the existing cluster (only with cluster); empty: the region.",
    ),
    _stack(
        "clusterProject",
        str,
        "Project of the existing cluster (only with cluster), whose Workload Identity pool "
        "the workers use; empty: project.",
    ),
    _stack(
        "network",
        str,
        "Existing VPC network of a new cluster and its Memorystore (not with cluster; never "
        "default); empty: the stack makes its own VPC.",
    ),
    _stack(
        "subnetwork",
        str,
        "Subnetwork of network for a new cluster (required with network, which it belongs to; "
        "Private Google Access on).",
    ),
    _stack(
        "authorizedNetworks",
        str,
        "Comma-separated CIDR blocks allowed to reach a new cluster's control plane (where "
        "pulumi and kubectl run); required unless privateEndpoint.",
    ),
    _stack(
        "privateEndpoint",
        bool,
        "A new cluster's control plane has no public endpoint: run pulumi from inside network "
        "(requires network; authorizedNetworks then lists internal ranges).",
    ),
    _stack(
        "releaseChannel",
        str,
        "GKE release channel of a new cluster: RAPID, REGULAR, STABLE or EXTENDED.",
    ),
    _stack(
        "kubernetesVersion",
        str,
        "Minimum Kubernetes minor of a new cluster (minMasterVersion); the KEDA the stack "
        "installs must support it (KEDA's compatibility matrix, checked at preview).",
    ),
    _stack(
        "kedaNamespace",
        str,
        "Namespace KEDA runs in: the stack installs it there, or it is there already "
        "(kedaInstalled); the queue-length service answers only it.",
    ),
    _stack(
        "kedaVersion",
        str,
        "KEDA chart version the stack installs on a cluster it creates; must support "
        "kubernetesVersion.",
    ),
    _stack(
        "cloudNat",
        bool,
        "Add Cloud NAT for a new cluster's private nodes, on its subnetwork only (needed for "
        "an internet broker or KEDA's images; not on a Shared VPC).",
    ),
    _stack(
        "image",
        str,
        "Existing worker image pinned by digest (REGISTRY/PATH@sha256:"
        "...); empty: build worker_image/ and push it to the stack's registry.",
    ),
    _stack(
        "maintenanceStart",
        str,
        "Start (UTC, HH:MM) of a new cluster's daily maintenance window: GKE upgrades, "
        "which restart workers, happen only then.",
    ),
    _stack(
        "kedaInstalled",
        bool,
        "The cluster has KEDA already (required with keda on an existing cluster: install it "
        "once per cluster); false: the stack installs KEDA on a cluster it creates.",
    ),
    _stack("imageTag", str, "Tag pushed with a built image (the digest is what deploys)."),
    _stack(
        "appDir",
        str,
        "Directory of your Celery app inside the Pulumi project, copied to /app of a built "
        "image; empty: worker_image/app, which has no tasks.",
    ),
    _stack(
        "appRequirements",
        str,
        "Your app's requirements file inside the Pulumi project, every requirement with "
        "--hash (installed into a built image); empty: none.",
    ),
    _stack(
        "monitoring",
        bool,
        "Scrape the workers with Managed Service for Prometheus and add the dashboard and alert policies (docs/observability.md); false: none of it.",
    ),
    _stack(
        "alertNotificationChannels",
        str,
        "Comma-separated Cloud Monitoring notification channels (projects/P/notificationChannels/ID) the alerts notify; empty: alerts show in the console only.",
    ),
    _stack(
        "alertBacklogAgeSeconds",
        int,
        "Alert when a queue's oldest task has waited this many seconds.",
    ),
    _stack(
        "alertFailurePercent",
        int,
        "Alert when this percentage of tasks fail over 10 minutes.",
    ),
    _stack(
        "alertRestarts",
        int,
        "Alert when a worker container restarts this many times within 30 minutes (a crash loop).",
    ),
    _stack(
        "alertBackendErrorPercent",
        int,
        "Alert when this percentage of GCS and Firestore calls fail over 10 minutes.",
    ),
    _stack(
        "alertChordPublishMinutes",
        int,
        "Alert when a chord callback stays claimed this many minutes without being published or failed.",
    ),
    _stack(
        "alertChordOpenMinutes",
        int,
        "A chord's deadline: alert when a chord is still open this many minutes after it was applied.",
    ),
    _worker(
        "celeryApp", str, "The Celery app the workers run (CELERY_APP), such as proj.celery:app."
    ),
    _worker("queues", str, "Comma-separated queues the workers consume (CELERY_QUEUES)."),
    _worker("concurrency", int, "Worker processes per pod (CELERY_CONCURRENCY)."),
    _worker("cpu", str, "CPU per pod (request and limit)."),
    _worker("memory", str, "Memory per pod (request and limit)."),
    _worker("minReplicas", int, "Fewest worker pods (0 allowed with KEDA)."),
    _worker("maxReplicas", int, "Most worker pods."),
    _worker(
        "terminationGracePeriodSeconds",
        int,
        "Seconds a pod gets after SIGTERM to "
        "finish its tasks (warm shutdown); at least your longest task.",
    ),
    _worker(
        "keda",
        bool,
        "Scale on queue length with a KEDA ScaledObject (KEDA installed by the stack on a "
        "cluster it creates); false: CPU HorizontalPodAutoscaler.",
    ),
    _worker("kedaListLength", int, "Queued tasks per pod KEDA aims for."),
    _worker(
        "extraEnv",
        str,
        "Comma-separated NAME=value environment variables for your app in the worker "
        "container (not one the stack sets).",
    ),
    _worker(
        "extraArgs",
        str,
        "Space-separated arguments appended to celery worker, such as --prefetch-multiplier=1.",
    ),
    _worker(
        "acksLate",
        bool,
        "Tasks are acknowledged when they end (CELERY_TASK_ACKS_LATE for the app): a killed "
        "worker's task is redelivered, not lost.",
    ),
    _worker(
        "rejectOnWorkerLost",
        bool,
        "With acksLate, requeue a task whose pool process died (CELERY_TASK_REJECT_ON_WORKER_LOST).",
    ),
    _worker(
        "visibilityTimeout",
        int,
        "Seconds Redis waits before redelivering an unacknowledged task "
        "(CELERY_BROKER_VISIBILITY_TIMEOUT); above terminationGracePeriodSeconds and your "
        "longest task.",
    ),
    _worker(
        "remapSigterm",
        bool,
        "SIGTERM as a cold shutdown (REMAP_SIGTERM=SIGQUIT): running tasks are requeued at once "
        "instead of finishing within the grace period.",
    ),
    _worker(
        "smokeTest",
        bool,
        "After every pulumi up, a Job run as the workers checks that the stores are reachable, a "
        "result stores and reads back and a chord of 10 completes; up fails when it fails.",
    ),
    _worker("namespace", str, "Kubernetes namespace of the workers; empty: the prefix."),
    _worker(
        "createNamespace",
        bool,
        "Create the namespace and delete it with the stack; false: use an existing "
        "namespace without owning it.",
    ),
    _worker(
        "serviceAccount", str, "Kubernetes service account of the workers; empty: PREFIX-worker."
    ),
)

BY_KEY = {o.key: o for o in OPTIONS}
BY_FIELD = {o.field: o for o in OPTIONS}


def _parse(option: Option, raw: Any) -> Any:
    if option.kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "false"):
            return str(raw).lower() == "true"
        raise ConfigError(option.key, f"is {raw!r}, not a boolean", "Use true or false")
    if option.kind is int:
        try:
            return int(str(raw))
        except ValueError:
            raise ConfigError(
                option.key, f"is {raw!r}, not a whole number", "Use digits only"
            ) from None
    return str(raw)


#: The organization of a self-managed backend (file://, gs://): Pulumi's own name for "none".
DEFAULT_ORGANIZATION = "organization"


def default_prefix(stack: str, *, project: str, organization: str = DEFAULT_ORGANIZATION) -> str:
    """``celery-STACK-HASH``: the stack's name (cut to 10 characters) and 5 hex digits of
    ``ORGANIZATION/PROJECT/STACK``, what Pulumi itself keeps unique.

    The stack's name alone is not: two teams (two Pulumi projects, or two organizations) both
    naming a stack ``dev`` in one Google Cloud project or one cluster would otherwise claim the
    same service accounts, database, namespace and cluster. At most 7 + 10 + 1 + 5 = 23
    characters, the longest prefix every derived name has room for.
    """
    slug = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")[:10].strip("-")
    digest = hashlib.sha256(f"{organization}/{project}/{stack}".encode()).hexdigest()[:5]
    return "-".join(part for part in ("celery", slug, digest) if part)


def _label_value(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def load(
    values: Mapping[str, Any],
    *,
    stack: str,
    project: str = NAMESPACE,
    organization: str = DEFAULT_ORGANIZATION,
    secret_keys: Collection[str] = (),
    build_context: str = "",
) -> CeleryStackArgs:
    """Build the stack's arguments from ``celery-gcs:*`` config values.

    ``values`` maps full keys (``celery-gcs:region``) to values as Pulumi passes
    them (strings); keys of other namespaces (``gcp:*``) are ignored. ``project``
    and ``organization`` are Pulumi's (not Google Cloud's): with ``stack`` they
    make the default prefix (:func:`default_prefix`).
    """
    ours = {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{NAMESPACE}:")}
    for key in ours:
        if key not in BY_KEY:
            close = difflib.get_close_matches(key, BY_KEY, n=1)
            hint = f"Did you mean {close[0]}?" if close else "Pulumi.yaml lists the settings."
            raise ConfigError(
                key,
                E_UNKNOWN,
                f"{hint} Remove it with: pulumi config rm {NAMESPACE}:{key}",
                settable=False,
            )

    parsed: dict[str, Any] = {}
    for option in OPTIONS:
        if option.key in ours:
            if (
                option.secret
                and ours[option.key]
                and f"{NAMESPACE}:{option.key}" not in secret_keys
            ):
                raise ConfigError(option.key, E_NOT_SECRET, "Store it encrypted", secret=True)
            parsed[option.key] = _parse(option, ours[option.key])
        elif option.default is None:
            raise ConfigError(
                option.key, E_MISSING, option.description.rstrip("."), secret=option.secret
            )
        else:
            parsed[option.key] = option.default

    stack_kwargs: dict[str, Any] = {}
    worker_kwargs: dict[str, Any] = {"labels": {"celery-gcs-stack": _label_value(stack)}}
    for option in OPTIONS:
        value = parsed[option.key]
        if option.key in ("queues", "extraEnv"):
            value = tuple(q.strip() for q in value.split(",") if q.strip())
        if option.key == "extraArgs":
            value = tuple(shlex.split(value))
        if option.key == "prefix":
            value = value or default_prefix(stack, project=project, organization=organization)
        target = worker_kwargs if option.target is WorkerSettings else stack_kwargs
        target[option.field] = value
    stack_kwargs["labels"] = {"celery-gcs-stack": _label_value(stack)}
    stack_kwargs["build_context"] = build_context

    try:
        worker = WorkerSettings(**worker_kwargs)
        return CeleryStackArgs(worker=worker, **stack_kwargs)
    except SettingError as exc:
        option = BY_FIELD.get(exc.field)
        key = option.key if option else camel(exc.field)
        raise ConfigError(
            key, exc.problem, exc.fix, secret=bool(option and option.secret)
        ) from None


def from_pulumi(*, build_context: str = "") -> CeleryStackArgs:
    """:func:`load` with the running stack's config, as the language host provides it.

    ``build_context``: the checkout the worker image is built from when the
    stack names no ``image``.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys |= {k for k in values if pulumi.runtime.is_config_secret(k)}
    return load(
        values,
        stack=pulumi.get_stack(),
        project=pulumi.get_project(),
        organization=pulumi.get_organization() or DEFAULT_ORGANIZATION,
        secret_keys=secret_keys,
        build_context=build_context,
    )
