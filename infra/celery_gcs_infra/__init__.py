"""celery-gcs's Pulumi components, one module per concern, for ``pulumi up`` and teams' own programs.

Installed with ``pip install './celery-gcs[infra]'`` (from a checkout; no release is on PyPI). Import :class:`CeleryStack`
for the whole deployment; the others are its parts; ``settings`` turns a
stack's config into :class:`CeleryStackArgs`.
"""

from celery_gcs.install import require_extra as _require_extra

# Without one of the infra extra's packages, say how to install the extra, not a bare import error.
_require_extra("infra", ("pulumi", "pulumi_gcp", "pulumi_kubernetes", "pulumi_docker_build"), "celery_gcs_infra")

from .apis import Apis, ApisArgs
from .broker import Broker, BrokerArgs, BrokerConnection
from .chord_store import ChordStore, ChordStoreArgs
from .cluster import Cluster, ClusterArgs
from .common import SettingError
from .identity import WorkerIdentity, WorkerIdentityArgs
from .keda import Keda, KedaArgs
from .network import Network, NetworkArgs
from .registry import Registry, RegistryArgs
from .result_store import ResultStore, ResultStoreArgs
from .stack import CeleryStack, CeleryStackArgs, result_backend_url
from .worker import Worker, WorkerArgs, WorkerSettings

__all__ = [
    "Apis",
    "ApisArgs",
    "Broker",
    "BrokerArgs",
    "BrokerConnection",
    "CeleryStack",
    "CeleryStackArgs",
    "ChordStore",
    "ChordStoreArgs",
    "Cluster",
    "ClusterArgs",
    "Keda",
    "KedaArgs",
    "Network",
    "NetworkArgs",
    "Registry",
    "RegistryArgs",
    "ResultStore",
    "ResultStoreArgs",
    "SettingError",
    "Worker",
    "WorkerArgs",
    "WorkerIdentity",
    "WorkerIdentityArgs",
    "WorkerSettings",
    "result_backend_url",
]
