"""The chord store: a Firestore database in native mode and TTL policies on every document the backend writes.

The backend writes ``{collection}/{chord key}`` (``collection`` is the
backend's ``firestore_collection``, ``conventions.FIRESTORE_COLLECTION`` unless
configured) and ``{collection}/{chord key}/{parts or counters}/...`` (names in ``conventions``), each with a
``conventions.FIRESTORE_TTL_FIELD`` timestamp. TTL policies are per collection
group, and deleting a document never deletes its subcollections, so each
group gets its own policy: without the one on ``parts``, the parts of every
unfinished chord would stay forever. The field is also exempt from
single-field indexes: nothing queries it, and an indexed timestamp that only
grows is a write hotspot.

A policy on the ``parts`` group covers every ``parts`` collection of the
database, which is one reason each stack has a database of its own.

With a CMEK key, the database is created with it (``cmek_config``, which can only
be set at creation) after the Firestore service agent is granted the key.

Protected (prod) stacks get delete protection and point-in-time recovery and
are abandoned, not deleted, on destroy. Other stacks are destroyable: the
provider's default ``deletion_policy`` (ABANDON) would leave the database
behind, so they set DELETE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
from celery_gcs import conventions, name_rules

from . import cmek, common

_LOCATION = re.compile(r"^([a-z]+-[a-z]+[0-9]+|nam[0-9]+|eur[0-9]+)$")


def database_name(value: str, field_name: str = "firestore_database") -> str:
    problem = name_rules.database_problem(value)
    common.check(problem is None, field_name, f"{value!r} is not a valid Firestore database ID", f"Use a valid ID: {problem}")
    return value


def location(value: str, field_name: str = "firestore_location") -> str:
    common.check(
        bool(_LOCATION.match(value)),
        field_name,
        f"{value!r} is not a Firestore location",
        "Use a region such as europe-west1 or a multi-region such as eur3 or nam5",
    )
    return value


def collection_groups(collection: str) -> tuple[str, ...]:
    """The collection groups the backend writes, each of which needs a TTL policy."""
    return conventions.chord_collection_groups(collection)


def collection_name(value: str, field_name: str = "collection") -> str:
    problem = name_rules.collection_problem(value)
    common.check(
        problem is None,
        field_name,
        f"{value!r} is not a valid Firestore collection ID",
        f"Use a valid ID: {problem}",
    )
    return value


def resource_name(project: str, database: str) -> str:
    """The database's IAM resource name, as IAM conditions see it."""
    return f"projects/{project}/databases/{database}"


@dataclass(frozen=True, kw_only=True)
class ChordStoreArgs:
    project: str
    database: str = conventions.FIRESTORE_DATABASE
    location: str
    collection: str = conventions.FIRESTORE_COLLECTION
    ttl_field: str = conventions.FIRESTORE_TTL_FIELD
    #: Delete protection, point-in-time recovery, abandon on destroy (prod).
    protect: bool = False
    #: Cloud KMS key in the database's location; empty for Google-managed encryption.
    kms_key_name: str = ""

    def __post_init__(self) -> None:
        common.project_id(self.project)
        database_name(self.database)
        location(self.location)
        collection_name(self.collection)
        cmek.key_name(self.kms_key_name)
        cmek.check_location(self.kms_key_name, self.location, "the Firestore database")


class ChordStore(pulumi.ComponentResource):
    database: gcp.firestore.Database
    #: One TTL policy per collection group, by group name.
    ttl_policies: dict[str, gcp.firestore.Field]
    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ChordStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("chord_store", "ChordStore"), name, None, opts)
        after_grant = cmek.grants_before(
            name,
            parent=self,
            project=args.project,
            service="firestore.googleapis.com",
            key=args.kms_key_name,
            invoke_opts=common.invoke_options(self, opts),
        )
        self.database = gcp.firestore.Database(
            f"{name}-database",
            project=args.project,
            name=args.database,
            location_id=args.location,
            type="FIRESTORE_NATIVE",
            delete_protection_state=(
                "DELETE_PROTECTION_ENABLED" if args.protect else "DELETE_PROTECTION_DISABLED"
            ),
            point_in_time_recovery_enablement=(
                "POINT_IN_TIME_RECOVERY_ENABLED"
                if args.protect
                else "POINT_IN_TIME_RECOVERY_DISABLED"
            ),
            deletion_policy="ABANDON" if args.protect else "DELETE",
            cmek_config=(
                gcp.firestore.DatabaseCmekConfigArgs(kms_key_name=args.kms_key_name)
                if args.kms_key_name
                else None
            ),
            opts=common.child(self, depends_on=after_grant, protect=args.protect),
        )
        # The chords' group keeps its historical resource name, so an existing
        # stack's policy is not replaced.
        self.ttl_policies = {
            group: gcp.firestore.Field(
                f"{name}-ttl" if group == args.collection else f"{name}-ttl-{group}",
                project=args.project,
                database=self.database.name,
                collection=group,
                field=args.ttl_field,
                ttl_config=gcp.firestore.FieldTtlConfigArgs(),
                index_config=gcp.firestore.FieldIndexConfigArgs(),
                opts=common.child(self),
            )
            for group in collection_groups(args.collection)
        }
        self.name = self.database.name
        self.register_outputs(
            {"name": self.database.name, "ttl_collection_groups": list(self.ttl_policies)}
        )
