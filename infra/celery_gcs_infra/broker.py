"""The Celery broker: Memorystore for Redis, or a Redis URL the stack is given.

Memorystore runs with AUTH and in-transit encryption (server authentication)
on the cluster's VPC network, and with ``maxmemory-policy noeviction``: a broker
that evicts keys loses tasks. A protected (production) broker is durable: the
STANDARD_HA tier (a replica in another zone, automatic failover), RDB snapshots
every hour (a restart or maintenance no longer empties the queues) and a
weekly maintenance window. ``connect_mode`` is DIRECT_PEERING, or
PRIVATE_SERVICE_ACCESS, which a Shared VPC (a network of another project)
requires; the network then needs a private services access connection (the
stack makes one on a network it creates). The AUTH string is an additional
secret output of the instance, so Pulumi's state keeps it encrypted; it reaches
the workers only through their Kubernetes Secret, and the ``broker_url`` stack
output is a secret. Its URL is ``rediss://`` with the instance's CA
pinned (``ssl_cert_reqs=required``, ``ssl_ca_certs=`` the file the worker mounts
from the broker Secret); see :func:`memorystore_url`.

An external broker is a ``redis://`` or ``rediss://`` URL held as a secret config
value. Pub/Sub is not offered: kombu's Pub/Sub transport is not proven with
this backend yet.

Either way the component returns a :class:`BrokerConnection`, the values the
worker's Kubernetes Secret is made of.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_gcp as gcp

from . import cmek, common

#: Where the worker mounts the broker Secret; the CA file is in it.
CA_DIR = "/etc/celery-broker"
CA_FILE = "ca.pem"

KINDS = ("memorystore", "external")
TIERS = ("BASIC", "STANDARD_HA")
CONNECT_MODES = ("DIRECT_PEERING", "PRIVATE_SERVICE_ACCESS")
E_PEERING_ELSEWHERE = (
    "the broker would peer directly with {network}, a network of another project (a Shared VPC "
    "host, or the network of a cluster in another project), which Memorystore reaches only "
    "through private services access; set redisConnectMode to PRIVATE_SERVICE_ACCESS, or leave "
    "it empty to have it chosen (the network's owner makes the private services access connection)"
)
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_WINDOW = re.compile(r"^([A-Z]+) ([01][0-9]|2[0-3]):00$")
RDB_PERIOD = "ONE_HOUR"


def connect_mode_for(network: str, project: str, requested: str = "") -> str:
    """Memorystore's connect mode on ``network``: DIRECT_PEERING on the instance's own project's
    network, PRIVATE_SERVICE_ACCESS on another project's, the only way Memorystore reaches it.

    ``requested`` empty: chosen so; DIRECT_PEERING on another project's network is refused.
    """
    elsewhere = common.network_project(network, project) != project
    if elsewhere and requested == "DIRECT_PEERING":
        raise ValueError(E_PEERING_ELSEWHERE.format(network=network))
    if requested:
        return requested
    return "PRIVATE_SERVICE_ACCESS" if elsewhere else "DIRECT_PEERING"


def maintenance_window(value: str, field_name: str = "redis_maintenance_window") -> tuple[str, int]:
    """``DAY HH:00`` (UTC) as (day, hour): Memorystore windows start on the hour."""
    match = _WINDOW.match(value.strip().upper())
    common.check(
        bool(match) and match.group(1) in DAYS,
        field_name,
        f"{value!r} is not a weekly maintenance window",
        "Use a day and a whole hour in UTC, such as SUNDAY 03:00 (Memorystore windows start "
        "on the hour)",
    )
    assert match is not None
    return match.group(1), int(match.group(2))
_REDIS_VERSION = re.compile(r"^REDIS_[0-9]+(_[0-9]+)?$")


@dataclass(frozen=True)
class RedisUrl:
    """The parts of a Redis URL the autoscaler needs, parsed once at the edge."""

    tls: bool
    host: str
    port: int
    password: str = field(repr=False)
    database: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_redis_url(url: str, field_name: str = "broker_url") -> RedisUrl:
    """Parse and check an external broker URL; never echoes the URL (it holds a password)."""
    fix = "Use redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://... for TLS"
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    common.check(
        not scheme.startswith("gcpubsub") and not scheme.startswith("pubsub"),
        field_name,
        "Pub/Sub is not offered as a broker (kombu's transport is not proven with celery-gcs)",
        fix,
    )
    common.check(
        scheme in ("redis", "rediss"),
        field_name,
        f"the broker URL's scheme is {scheme or 'missing'!r}; only Redis brokers are supported "
        "(the autoscaler reads the Redis queue length)",
        fix,
    )
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or 6379
    except ValueError:
        port = -1
    common.check(
        bool(parts.hostname) and port > 0, field_name, "the URL has no valid host/port", fix
    )
    path = parts.path.strip("/")
    common.check(
        path == "" or path.isdigit(), field_name, "the URL's database is not a number", fix
    )
    return RedisUrl(
        tls=scheme == "rediss",
        host=parts.hostname or "",
        port=port,
        password=urllib.parse.unquote(parts.password or ""),
        database=int(path or 0),
    )


@dataclass(frozen=True)
class BrokerConnection:
    """What the worker needs to reach the broker; every value that can hold a secret is one."""

    url: pulumi.Output[str]
    address: pulumi.Output[str]
    #: The broker's host (an IP address for Memorystore) and port, for the workers' NetworkPolicy.
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    password: pulumi.Output[str]
    tls: bool
    #: PEM bundle to verify the server with; ``None`` to use the system roots.
    ca_pem: pulumi.Output[str] | None
    database: int


@dataclass(frozen=True, kw_only=True)
class BrokerArgs:
    project: str
    region: str
    kind: Literal["memorystore", "external"] = "memorystore"
    # Memorystore
    instance_name: str = ""
    #: ``projects/P/global/networks/N`` the instance peers with (the cluster's).
    network: pulumi.Input[str] | None = None
    tier: str = "BASIC"
    memory_size_gb: int = 1
    redis_version: str = "REDIS_7_2"
    protect: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    #: Empty: chosen from the network when it is known (:func:`connect_mode_for`).
    connect_mode: str = ""
    #: The network's project differs from ``project`` (a Shared VPC host).
    shared_vpc: bool = False
    #: Weekly window (``DAY HH:00`` UTC) for Memorystore's own maintenance.
    maintenance_window: str = "SUNDAY 03:00"
    #: Cloud KMS key in the region; empty for Google-managed encryption.
    kms_key_name: str = ""
    # External
    url: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        common.check(
            self.kind in KINDS,
            "broker",
            f"{self.kind!r} is not a broker kind",
            "Use memorystore (a new Memorystore for Redis instance) or external "
            "(a Redis URL you provide); Pub/Sub is not offered",
        )
        if self.kind == "external":
            common.check(
                bool(self.url), "broker_url", "an external broker needs a URL", "Set the broker URL"
            )
            parse_redis_url(self.url)
            return
        common.dns_label(self.instance_name, "instance_name", max_len=40)
        common.check(
            self.tier in TIERS,
            "redis_tier",
            f"{self.tier!r} is not a Memorystore tier",
            "Use BASIC (no replica) or STANDARD_HA (a failover replica)",
        )
        common.check(
            1 <= self.memory_size_gb <= 300,
            "redis_memory_gb",
            f"{self.memory_size_gb} GB is out of range",
            "Use 1-300",
        )
        common.check(
            bool(_REDIS_VERSION.match(self.redis_version)),
            "redis_version",
            f"{self.redis_version!r} is not a Memorystore version",
            "Use a version such as REDIS_7_2",
        )
        common.check(
            not self.protect or self.tier == "STANDARD_HA",
            "redis_tier",
            f"a protected stack's broker must survive a zone outage, and {self.tier} has no replica",
            "Use STANDARD_HA (or leave redisTier empty: protected stacks get it), or turn protect off",
        )
        common.check(
            self.connect_mode in ("", *CONNECT_MODES),
            "redis_connect_mode",
            f"{self.connect_mode!r} is not a Memorystore connect mode",
            f"Use one of {', '.join(CONNECT_MODES)}, or leave it empty to have it chosen",
        )
        common.check(
            not self.shared_vpc or self.connect_mode != "DIRECT_PEERING",
            "redis_connect_mode",
            "the network belongs to another project (a Shared VPC), which Memorystore reaches "
            "only through private services access",
            "Set redisConnectMode to PRIVATE_SERVICE_ACCESS (the host project needs a private "
            "services access connection on that network)",
        )
        maintenance_window(self.maintenance_window)
        cmek.key_name(self.kms_key_name)
        cmek.check_location(self.kms_key_name, self.region, "the Memorystore instance")


def external_connection(url: str) -> BrokerConnection:
    """The connection to a broker the stack is given: every part from its URL."""
    parsed = parse_redis_url(url)
    return BrokerConnection(
        url=pulumi.Output.secret(url),
        address=pulumi.Output.from_input(parsed.address),
        host=pulumi.Output.from_input(parsed.host),
        port=pulumi.Output.from_input(parsed.port),
        password=pulumi.Output.secret(parsed.password),
        tls=parsed.tls,
        ca_pem=None,
        database=parsed.database,
    )


def memorystore_connection(inst: gcp.redis.Instance) -> BrokerConnection:
    """The connection to a Memorystore instance: AUTH, TLS, and the instance's own CA."""
    password = pulumi.Output.secret(inst.auth_string)
    url = pulumi.Output.all(inst.host, inst.port, password).apply(
        lambda v: memorystore_url(host=v[0], port=v[1], password=v[2])
    )
    return BrokerConnection(
        url=pulumi.Output.secret(url),
        address=pulumi.Output.concat(inst.host, ":", inst.port.apply(str)),
        host=inst.host,
        port=inst.port,
        password=password,
        tls=True,
        ca_pem=inst.server_ca_certs.apply(
            lambda certs: "".join(c.cert for c in certs or [] if c.cert)
        ),
        database=0,
    )


def maintenance_policy(window: str) -> gcp.redis.InstanceMaintenancePolicyArgs:
    day, hour = maintenance_window(window)
    return gcp.redis.InstanceMaintenancePolicyArgs(
        weekly_maintenance_windows=[
            gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                day=day,
                start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                    hours=hour, minutes=0
                ),
            )
        ]
    )


class Broker(pulumi.ComponentResource):
    connection: BrokerConnection
    instance: gcp.redis.Instance | None

    def __init__(
        self, name: str, args: BrokerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("broker", "Broker"), name, None, opts)
        if args.kind == "external":
            self.instance = None
            self.connection = external_connection(args.url)
            self.register_outputs({"kind": "external"})
            return
        self.instance = self._memorystore(name, args, common.invoke_options(self, opts))
        self.connection = memorystore_connection(self.instance)
        inst = self.instance
        self.register_outputs({"kind": "memorystore", "host": inst.host, "port": inst.port})

    def _memorystore(
        self, name: str, args: BrokerArgs, invoke_opts: pulumi.InvokeOutputOptions
    ) -> gcp.redis.Instance:
        after_grant = cmek.grants_before(
            name,
            parent=self,
            project=args.project,
            service="redis.googleapis.com",
            key=args.kms_key_name,
            invoke_opts=invoke_opts,
        )
        return gcp.redis.Instance(
            f"{name}-redis",
            name=args.instance_name,
            project=args.project,
            region=args.region,
            tier=args.tier,
            memory_size_gb=args.memory_size_gb,
            redis_version=args.redis_version,
            authorized_network=args.network,
            # Known at preview: a network path from the settings, or the existing cluster's, read.
            connect_mode=pulumi.Output.from_input(args.network).apply(
                lambda network: connect_mode_for(network or "", args.project, args.connect_mode)
            ),
            auth_enabled=True,
            transit_encryption_mode="SERVER_AUTHENTICATION",
            redis_configs={"maxmemory-policy": "noeviction"},
            persistence_config=(
                gcp.redis.InstancePersistenceConfigArgs(
                    persistence_mode="RDB", rdb_snapshot_period=RDB_PERIOD
                )
                if args.protect
                else None
            ),
            maintenance_policy=maintenance_policy(args.maintenance_window),
            customer_managed_key=args.kms_key_name or None,
            labels={**common.APP_LABEL, **args.labels},
            # The provider protects instances unless told otherwise.
            deletion_protection=args.protect,
            opts=common.child(
                self,
                depends_on=after_grant,
                protect=args.protect,
                # The state keeps it encrypted, like the Secret and the broker_url output.
                additional_secret_outputs=["authString"],
            ),
        )


def memorystore_url(*, host: str, port: int, password: str, database: int = 0) -> str:
    """A kombu URL for Memorystore with AUTH and TLS, verifying the server's certificate.

    The certificate must chain to the instance's own CA (each instance has its
    own), which is what authenticates the server. The host name check is off:
    clients connect to the instance's IP address, and Memorystore's certificate
    carries that address in its CN, which redis-py (6+, where the check is on by
    default) does not accept.
    """
    query = urllib.parse.urlencode(
        {
            "ssl_cert_reqs": "required",
            "ssl_ca_certs": f"{CA_DIR}/{CA_FILE}",
            "ssl_check_hostname": "false",
        }
    )
    auth = urllib.parse.quote(password, safe="")
    return f"rediss://:{auth}@{host}:{port}/{database}?{query}"
