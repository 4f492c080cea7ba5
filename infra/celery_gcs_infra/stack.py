"""``CeleryStack``: everything celery-gcs needs on Google Cloud, as one component.

This is the component a team's own Pulumi program imports::

    from celery_gcs_infra import CeleryStack, CeleryStackArgs, WorkerSettings

    stack = CeleryStack("celery", CeleryStackArgs(
        project="my-project", region="europe-west1",
        worker=WorkerSettings(celery_app="proj.celery:app"),
    ))
    pulumi.export("result_backend", stack.result_backend)

``CeleryStackArgs`` checks every value when it is constructed, before any
resource exists; ``celery_gcs_infra.settings`` builds it from stack config.

Children, in creation order: APIs, result store, chord store, network (for a
cluster it creates), cluster, image registry, broker, worker identity (its
Workload Identity binding after the cluster), KEDA (on a cluster it creates,
when the workers scale with KEDA), worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
from celery_gcs import conventions

from . import (
    apis,
    broker,
    chord_store,
    cluster,
    cmek,
    common,
    identity,
    keda,
    monitoring,
    network,
    pods,
    registry,
    result_store,
)
from .cluster import DEFAULT_KUBERNETES_VERSION
from .monitoring import Thresholds
from .worker import Worker, WorkerArgs, WorkerSettings


def result_backend_url(
    *,
    bucket: str,
    base_path: str,
    project: str,
    database: str,
    collection: str = conventions.FIRESTORE_COLLECTION,
) -> str:
    """The ``gcs://BUCKET[/prefix]?...`` URL the backend reads (Celery's ``result_backend``).

    It names the collection too, so the backend writes where the TTL policies are.
    """
    return conventions.backend_url(
        bucket,
        base_path,
        gcs_project=project,
        firestore_project=project,
        firestore_database=database,
        firestore_collection=collection,
    )


@dataclass(frozen=True, kw_only=True)
class CeleryStackArgs:
    """Every setting of a deployment. Empty strings mean "derive it" (see each field)."""

    project: str
    region: str
    worker: WorkerSettings
    #: Prefix of every resource name; at most 23 characters, starting with a letter.
    prefix: str = "celery"
    #: Production protection: Firestore delete protection and PITR, Pulumi
    #: ``protect`` and provider deletion protection on stateful resources.
    protect: bool = False
    #: Labels on every Google Cloud resource that takes labels.
    labels: dict[str, str] = field(default_factory=dict)
    # Result store.
    #: Default: ``PROJECT-PREFIX-results``.
    bucket_name: str = ""
    #: Default: the region.
    bucket_location: str = ""
    #: Key prefix inside the bucket (the URL's path).
    base_path: str = ""
    #: Cloud KMS key for every resource that takes one; a resource in another location uses the
    #: same key ring and key name there (cmek.key_in: eur3 -> europe, a region -> that region).
    kms_key_name: str = ""
    # Chord store.
    #: Default: ``PREFIX-chords``, the stack's own database: two stacks never
    #: share one, nor its TTL fields; ``(default)`` only when asked for.
    firestore_database: str = ""
    #: The backend's ``firestore_collection``: the URL names it and its TTL policies cover it.
    firestore_collection: str = conventions.FIRESTORE_COLLECTION
    #: Default: the region.
    firestore_location: str = ""
    # Broker.
    broker: str = "memorystore"
    broker_url: str = field(default="", repr=False)
    #: Default: STANDARD_HA on a protected stack, BASIC otherwise.
    redis_tier: str = ""
    redis_memory_gb: int = 1
    redis_version: str = "REDIS_7_2"
    #: DIRECT_PEERING, or PRIVATE_SERVICE_ACCESS (required on another project's network: a Shared
    #: VPC, an existing cluster in another project). Empty: chosen from the network's project.
    redis_connect_mode: str = ""
    #: Memorystore's weekly maintenance window, ``DAY HH:00`` UTC.
    redis_maintenance_window: str = "SUNDAY 03:00"
    # Cluster.
    #: An existing cluster's name; empty to create an Autopilot cluster named PREFIX.
    cluster: str = ""
    #: An existing cluster's location; default: the region.
    cluster_location: str = ""
    #: An existing cluster's project; default: ``project``. Its Workload Identity
    #: pool (``CLUSTER_PROJECT.svc.id.goog``) is what the worker's identity trusts.
    cluster_project: str = ""
    #: A new cluster's existing network (never ``default``); empty: the stack makes its own VPC.
    network: str = ""
    #: The existing network's subnetwork; required with ``network``.
    subnetwork: str = ""
    #: Comma-separated CIDR blocks that may reach a new cluster's control plane.
    authorized_networks: str = ""
    #: A new cluster's control plane has no public endpoint (run pulumi inside ``network``).
    private_endpoint: bool = False
    release_channel: str = "REGULAR"
    #: A new cluster's minimum Kubernetes minor; KEDA (when the stack installs it) must support it.
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    #: The KEDA chart the stack installs on a cluster it creates (checked against kubernetes_version).
    keda_version: str = keda.CHART_VERSION
    #: Where KEDA runs: the stack installs it there, or it is there already (``keda_installed``).
    keda_namespace: str = keda.NAMESPACE
    cloud_nat: bool = False
    #: Daily GKE maintenance window start (UTC, HH:MM) of a new cluster.
    maintenance_start: str = "03:00"
    #: The cluster has KEDA already; otherwise a new cluster gets it from the stack.
    keda_installed: bool = False
    # Image.
    #: An existing image pinned by digest; empty to build ``worker_image/`` from ``build_context``.
    image: str = ""
    #: A checkout of celery-gcs to build the worker image from, when ``image`` is empty.
    build_context: str = ""
    image_tag: str = "latest"
    #: The team's app directory, inside ``build_context``, copied to /app; empty: none.
    app_dir: str = ""
    #: Its requirements file (hashed), inside ``build_context``; empty: none.
    app_requirements: str = ""
    # Monitoring (monitoring.py): scraping, a dashboard, alert policies; all off with ``monitoring=False``.
    monitoring: bool = True
    #: Comma-separated Cloud Monitoring notification channels (projects/P/notificationChannels/ID).
    alert_notification_channels: str = ""
    alert_backlog_age_seconds: int = Thresholds.backlog_age_seconds
    alert_failure_percent: int = Thresholds.failure_percent
    alert_restarts: int = Thresholds.restarts
    alert_backend_error_percent: int = Thresholds.backend_error_percent
    alert_chord_publish_minutes: int = Thresholds.chord_publish_minutes
    alert_chord_open_minutes: int = Thresholds.chord_open_minutes

    def __post_init__(self) -> None:
        common.project_id(self.project)
        common.region(self.region)
        common.dns_label(self.prefix, "prefix", max_len=23)
        common.dns_label(self.keda_namespace, "keda_namespace")
        common.check(
            self.prefix[0].isalpha(),
            "prefix",
            f"{self.prefix!r} must start with a letter",
            "Use a prefix such as celery-dev",
        )
        common.labels(self.labels)
        if self.cluster:
            self._check_existing_cluster()
        else:
            self._check_new_cluster()
        self._derive()
        result_store.base_path(self.base_path)
        common.check(
            self.broker != "memorystore" or not self.broker_url,
            "broker_url",
            "a broker URL is set but the broker is memorystore",
            "Set broker to external to use the URL, or remove the URL",
        )
        self._check_components()

    # Settings of an existing cluster mean nothing for a new one, and the
    # reverse: refuse them rather than apply them somewhere unexpected.
    def _check_new_cluster(self) -> None:
        for name, what in (("cluster_location", "location"), ("cluster_project", "project")):
            common.check(
                not getattr(self, name),
                name,
                f"is the {what} of an existing cluster, but no cluster is set",
                "Set cluster to the existing cluster's name, or remove it: a new cluster "
                f"is created in the stack's {'region' if what == 'location' else 'project'}",
            )
        common.check(
            not self.private_endpoint or bool(self.network),
            "private_endpoint",
            "a control plane without a public endpoint is reachable only from inside its "
            "network, and the stack's own VPC has nothing inside to run pulumi from",
            "Set network (and subnetwork) to a network your pulumi runner is in, or use "
            "authorizedNetworks instead",
        )
        common.check(
            not self.worker.keda or self.keda_installed or self.cloud_nat,
            "cloud_nat",
            "the stack installs KEDA, whose images come from ghcr.io, which private nodes "
            "reach only through Cloud NAT",
            "Set cloudNat true (NAT for the stack's own subnetwork), or turn keda off",
        )

    def _check_existing_cluster(self) -> None:
        for name, what in (
            ("network", "a new cluster's network"),
            ("authorized_networks", "who reaches a new cluster's control plane"),
            ("private_endpoint", "a new cluster's control plane endpoint"),
        ):
            common.check(
                not getattr(self, name),
                name,
                f"sets {what}, but an existing cluster is used",
                "Remove it: the existing cluster's own network and control plane are used",
            )
        if self.cluster_project:
            common.project_id(self.cluster_project, "cluster_project")
        common.check(
            not self.cloud_nat,
            "cloud_nat",
            "Cloud NAT is only added with a new cluster",
            "Configure NAT on the existing cluster's network yourself, or turn cloud_nat off",
        )
        common.check(
            not self.worker.keda or self.keda_installed,
            "keda_installed",
            "keda is on but an existing cluster's KEDA is not confirmed",
            "Install KEDA once per cluster (docs/environments.md) and set kedaInstalled "
            "true; the stack installs it only on a cluster it creates",
        )
        common.check(
            not self.subnetwork,
            "subnetwork",
            "a subnetwork is only used for a new cluster",
            "Remove it: the existing cluster's network is used",
        )

    def _derive(self) -> None:
        """Fill every empty setting that has a derived value (the class docstring's "derive it")."""
        derived = {
            "bucket_name": self.bucket_name or f"{self.project}-{self.prefix}-results",
            "firestore_database": self.firestore_database or f"{self.prefix}-chords",
            "bucket_location": self.bucket_location or self.region,
            "firestore_location": self.firestore_location or self.region,
            "cluster_location": self.cluster_location or self.region,
            "cluster_project": self.cluster_project or self.project,
            "redis_tier": self.redis_tier or ("STANDARD_HA" if self.protect else "BASIC"),
        }
        if not self.cluster and not self.redis_connect_mode:
            # A new cluster's network is known now; an existing cluster's once it is read.
            path = common.network_id(self.project, self.network) if self.network else ""
            derived["redis_connect_mode"] = broker.connect_mode_for(path, self.project)
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        # The workers' names and identity are the stack's own: two stacks never
        # share a namespace, a Kubernetes service account or a Workload Identity member.
        worker = self.worker
        object.__setattr__(
            self,
            "worker",
            dataclasses.replace(
                worker,
                instance=worker.instance or self.prefix,
                namespace=worker.namespace or self.prefix,
                service_account=worker.service_account or f"{self.prefix}-worker",
            ),
        )

    def _check_components(self) -> None:
        """Build every argument object that needs no resource output: each validates itself."""
        self.result_store_args()
        self.chord_store_args()
        if not self.cluster:
            self.network_args()
        self.cluster_args()
        self.broker_args(peer_network=None)
        self.registry_args(readers=())
        if not self.image:
            # Now, at preview: a missing app would otherwise be a crash loop after `up`.
            self.app_build_args()
        self.identity_args(bucket="", cluster=None)
        if self.installs_keda:
            self.keda_args(provider=None)
        if self.monitoring:
            self.monitoring_args(provider=None, queue_length=False)

    # --- what each component gets ----------------------------------------
    def result_store_args(self) -> result_store.ResultStoreArgs:
        return result_store.ResultStoreArgs(
            project=self.project,
            bucket_name=self.bucket_name,
            location=self.bucket_location,
            kms_key_name=cmek.key_in(self.kms_key_name, self.bucket_location),
            force_destroy=not self.protect,
            protect=self.protect,
            labels=self.labels,
        )

    def chord_store_args(self) -> chord_store.ChordStoreArgs:
        return chord_store.ChordStoreArgs(
            project=self.project,
            database=self.firestore_database,
            location=self.firestore_location,
            collection=self.firestore_collection,
            protect=self.protect,
            kms_key_name=cmek.key_in(self.kms_key_name, self.firestore_location),
        )

    def network_args(self) -> network.NetworkArgs:
        return network.NetworkArgs(
            project=self.project,
            region=self.region,
            name=self.prefix,
            network=self.network,
            subnetwork=self.subnetwork,
            cloud_nat=self.cloud_nat,
            private_service_access=(
                self.broker == "memorystore"
                and self.redis_connect_mode == "PRIVATE_SERVICE_ACCESS"
                and not self.network
            ),
            labels=self.labels,
        )

    def cluster_args(
        self,
        net: network.Network | None = None,
    ) -> cluster.ClusterArgs:
        return cluster.ClusterArgs(
            project=self.cluster_project,
            location=self.cluster_location,
            name=self.cluster or self.prefix,
            existing=bool(self.cluster),
            network=net.network if net else None,
            subnetwork=net.subnetwork if net else None,
            pods_range=net.pods_range if net else None,
            services_range=net.services_range if net else None,
            release_channel=self.release_channel,
            kubernetes_version=self.kubernetes_version,
            node_account_id=f"{self.prefix}-nodes",
            authorized_networks=cluster.authorized_networks(self.authorized_networks),
            private_endpoint=self.private_endpoint,
            kms_key_name="" if self.cluster else cmek.key_in(self.kms_key_name, self.cluster_location),
            maintenance_start=self.maintenance_start,
            protect=self.protect,
            labels=self.labels,
        )

    def broker_args(self, peer_network: pulumi.Input[str] | None) -> broker.BrokerArgs:
        return broker.BrokerArgs(
            project=self.project,
            region=self.region,
            kind=self.broker,  # type: ignore[arg-type]  # validated by BrokerArgs
            instance_name=f"{self.prefix}-broker",
            network=peer_network,
            tier=self.redis_tier,
            memory_size_gb=self.redis_memory_gb,
            redis_version=self.redis_version,
            protect=self.protect,
            labels=self.labels,
            url=self.broker_url,
            connect_mode=self.redis_connect_mode,
            shared_vpc=bool(self.network)
            and common.network_project(self.network, self.project) != self.project,
            maintenance_window=self.redis_maintenance_window,
            kms_key_name=cmek.key_in(self.kms_key_name, self.region),
        )

    def app_build_args(self) -> dict[str, str]:
        if self.image or not self.build_context:
            return {}
        return registry.app_build_args(
            context=self.build_context,
            app_dir=self.app_dir,
            requirements=self.app_requirements,
            celery_app=self.worker.celery_app,
        )

    def registry_args(self, readers: pulumi.Input[Sequence[str]]) -> registry.RegistryArgs:
        return registry.RegistryArgs(
            project=self.project,
            location=self.region,
            repository_id=self.prefix,
            image=self.image,
            context=self.build_context,
            tag=self.image_tag,
            build_args=self.app_build_args(),
            protect=self.protect,
            readers=readers,
            labels=self.labels,
            kms_key_name=cmek.key_in(self.kms_key_name, self.region),
        )

    def identity_args(
        self, bucket: pulumi.Input[str], cluster: pulumi.Resource | None
    ) -> identity.WorkerIdentityArgs:
        return identity.WorkerIdentityArgs(
            project=self.project,
            account_id=f"{self.prefix}-worker",
            bucket=bucket,
            database=self.firestore_database,
            namespace=self.worker.namespace,
            kubernetes_service_account=self.worker.service_account,
            pool_project=self.cluster_project,
            cluster=cluster,
        )

    def monitoring_args(self, provider: k8s.Provider | None, queue_length: bool) -> monitoring.MonitoringArgs:
        worker = self.worker
        return monitoring.MonitoringArgs(
            project=self.project,
            name=self.prefix,
            namespace=worker.namespace,
            worker_selector=pods.selector("celery-worker", worker.instance),
            queue_length_selector=pods.selector("celery-queue-length", worker.instance) if queue_length else None,
            thresholds=monitoring.Thresholds(
                backlog_age_seconds=self.alert_backlog_age_seconds,
                failure_percent=self.alert_failure_percent,
                restarts=self.alert_restarts,
                backend_error_percent=self.alert_backend_error_percent,
                chord_publish_minutes=self.alert_chord_publish_minutes,
                chord_open_minutes=self.alert_chord_open_minutes,
            ),
            notification_channels=tuple(c.strip() for c in self.alert_notification_channels.split(",") if c.strip()),
            provider=provider,
            labels=self.labels,
        )

    @property
    def installs_keda(self) -> bool:
        """The workers scale with KEDA and the cluster does not have it: the stack installs it."""
        return self.worker.keda and not self.keda_installed

    def keda_args(self, provider: k8s.Provider | None) -> keda.KedaArgs:
        return keda.KedaArgs(
            version=self.keda_version,
            namespace=self.keda_namespace,
            kubernetes_version=self.kubernetes_version,
            provider=provider,
        )

    def apis_args(self) -> apis.ApisArgs:
        return apis.ApisArgs(
            project=self.project,
            services=apis.services_for(
                new_cluster=not self.cluster,
                memorystore=self.broker == "memorystore",
                cmek=bool(self.kms_key_name),
                own_network=not self.cluster and not self.network,
                monitoring=self.monitoring,
                private_service_access=self.network_args().private_service_access
                if not self.cluster
                else False,
            ),
        )


class CeleryStack(pulumi.ComponentResource):
    """The whole deployment; its attributes are the stack's outputs."""

    bucket: pulumi.Output[str]
    database: pulumi.Output[str]
    service_account_email: pulumi.Output[str]
    result_backend: pulumi.Output[str]
    cluster: pulumi.Output[str]
    namespace: pulumi.Output[str]
    image: pulumi.Output[str]
    image_digest: pulumi.Output[str]
    registry: pulumi.Output[str]
    #: The broker URL, AUTH string included: a Pulumi secret, for producers outside the cluster.
    broker_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: CeleryStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("stack", "CeleryStack"), name, None, opts)
        self.apis = apis.Apis(f"{name}-apis", args.apis_args(), opts=common.child(self))
        after_apis = common.child(self, depends_on=[self.apis])

        self.result_store = result_store.ResultStore(
            f"{name}-results", args.result_store_args(), opts=after_apis
        )
        self.chord_store = chord_store.ChordStore(
            f"{name}-chords", args.chord_store_args(), opts=after_apis
        )
        self.network = (
            network.Network(f"{name}-network", args.network_args(), opts=after_apis)
            if not args.cluster
            else None
        )
        self.cluster_component = cluster.Cluster(
            f"{name}-cluster", args.cluster_args(self.network), opts=after_apis
        )
        gke = self.cluster_component
        # New or existing, every node pool's account pulls the image, wherever it is.
        readers = gke.node_service_account_emails.apply(lambda es: [f"serviceAccount:{e}" for e in es])
        self.registry_component = registry.Registry(
            f"{name}-registry", args.registry_args(readers), opts=after_apis
        )
        self.broker = self._broker(name, args)
        self.identity = identity.WorkerIdentity(
            f"{name}-identity",
            args.identity_args(bucket=self.result_store.name, cluster=gke.cluster),
            opts=after_apis,
        )
        self.result_backend = pulumi.Output.all(
            self.result_store.name, self.chord_store.name
        ).apply(
            lambda v: result_backend_url(
                bucket=v[0],
                base_path=args.base_path,
                project=args.project,
                database=v[1],
                collection=args.firestore_collection,
            )
        )
        self.keda = self._keda(name, args)
        self.worker = self._worker(name, args)
        self.monitoring = (
            monitoring.Monitoring(
                f"{name}-monitoring",
                args.monitoring_args(self.cluster_component.provider, self.worker.queue_metrics is not None),
                # After the workers' objects, not the whole component: the dashboard and alerts
                # must exist even when the smoke test (the component's last child) fails.
                opts=common.child(self, depends_on=[self.apis, *self.worker.watched]),
            )
            if args.monitoring
            else None
        )
        #: Every name's prefix: an existing stack keeps its names by setting it (docs/environments.md).
        self.prefix = pulumi.Output.from_input(args.prefix)
        self.bucket = self.result_store.name
        self.database = self.chord_store.name
        self.service_account_email = self.identity.email
        self.cluster = gke.name
        self.namespace = self.worker.namespace_name
        self.image = self.registry_component.image_ref
        self.image_digest = self.registry_component.digest
        self.registry = self.registry_component.repository.registry_uri
        self.broker_url = pulumi.Output.secret(self.broker.connection.url)
        #: When the smoke test of this ``up`` completed (it failing fails the ``up``); None without one.
        job = self.worker.smoke_test
        self.smoke_test_passed_at: pulumi.Output[str | None] = (
            job.status.apply(lambda status: getattr(status, "completion_time", None))
            if job is not None
            else pulumi.Output.from_input(None)
        )
        self.register_outputs(self.outputs())

    def _broker(self, name: str, args: CeleryStackArgs) -> broker.Broker:
        """The broker, peered with the cluster's network once its private services access exists."""
        gke = self.cluster_component
        psa = self.network.private_service_access if self.network else None
        return broker.Broker(
            f"{name}-broker",
            args.broker_args(peer_network=gke.network if args.broker == "memorystore" else None),
            opts=common.child(self, depends_on=[self.apis, *([psa] if psa else [])]),
        )

    def _keda(self, name: str, args: CeleryStackArgs) -> keda.Keda | None:
        """KEDA, on a cluster that scales with it and does not have it yet."""
        if not args.installs_keda:
            return None
        gke = self.cluster_component
        waits: list[pulumi.Resource] = [gke]
        if self.network is not None and self.network.own and gke.cluster is not None:
            waits.append(keda.control_plane_firewall(f"{name}-keda", self, self.network, gke))
        return keda.Keda(
            f"{name}-keda",
            args.keda_args(gke.provider),
            opts=common.child(self, depends_on=waits),
        )

    def _worker(self, name: str, args: CeleryStackArgs) -> Worker:
        own_vpc = self.network is not None and self.network.own
        return Worker(
            f"{name}-worker",
            WorkerArgs(
                project=args.project,
                settings=args.worker,
                google_service_account=self.identity.email,
                image=self.registry_component.image_ref,
                result_backend=self.result_backend,
                broker=self.broker.connection,
                provider=self.cluster_component.provider,
                keda=self.keda,
                keda_namespace=args.keda_namespace,
                google_apis_cidr=network.PRIVATE_GOOGLE_APIS_CIDR if own_vpc else "0.0.0.0/0",
            ),
            # The pods need their identity, its grants and the TTL policy in place.
            opts=common.child(self, depends_on=[self.identity, self.chord_store]),
        )

    def outputs(self) -> dict[str, pulumi.Output]:
        """The stack outputs, by name."""
        return {
            "prefix": self.prefix,
            "bucket": self.bucket,
            "firestore_database": self.database,
            "service_account_email": self.service_account_email,
            "result_backend": self.result_backend,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "image": self.image,
            "image_digest": self.image_digest,
            "registry": self.registry,
            "broker_url": self.broker_url,
            "smoke_test_passed_at": self.smoke_test_passed_at,
        }


__all__ = ["CeleryStack", "CeleryStackArgs", "WorkerSettings", "result_backend_url"]
