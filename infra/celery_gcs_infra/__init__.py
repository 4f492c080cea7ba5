"""celery-gcs's Pulumi components, one module per concern, for ``pulumi up`` and teams' own programs.

Installed with ``pip install './celery-gcs[infra]'`` (from a checkout; no release is on PyPI). Import :class:`CeleryStack`
for the whole deployment; the others are its parts; ``settings`` turns a
stack's config into :class:`CeleryStackArgs`.
"""

import importlib.util as _util

from celery_gcs.install import install_line as _install_line

#: The infra extra's packages: without one of them, say how to install the extra, not a bare import error.
_EXTRA = ("pulumi", "pulumi_gcp", "pulumi_kubernetes", "pulumi_docker_build")
_missing = [name for name in _EXTRA if _util.find_spec(name) is None]
if _missing:
    raise ModuleNotFoundError(
        f"celery_gcs_infra needs celery-gcs's infra extra ({', '.join(_missing)} not installed); "
        f"install it with:\n  {_install_line(['infra'])}",
        name=_missing[0],
    )

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
