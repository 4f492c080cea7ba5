"""The result bucket: private, unversioned, no soft delete, results expire by lifecycle.

The backend sets each result object's ``customTime`` to the moment it expires,
so a Delete rule on "days since custom time" (``conventions.LIFECYCLE_DAYS_SINCE_CUSTOM_TIME``)
removes results once they are due; a Delete rule on age
(``conventions.LIFECYCLE_MAX_AGE_DAYS``) catches objects written without one.
Results are disposable: soft delete and versioning would only keep garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
from celery_gcs import conventions, name_rules

from . import cmek, common

_BASE_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")

#: Role the worker gets on this bucket (read, write, list and delete objects).
WORKER_ROLE = conventions.WORKER_BUCKET_ROLE
#: Role the Cloud Storage service agent needs on a CMEK key.
KMS_ROLE = cmek.ROLE


def bucket_name(value: str, field_name: str = "bucket_name") -> str:
    # Dotted names are valid GCS names but need domain verification to create.
    problem = name_rules.bucket_problem(value) or ("avoid dots: they need domain verification" if "." in value else None)
    common.check(problem is None, field_name, f"{value!r} is not a valid bucket name", f"Use a valid name: {problem}")
    return value


def base_path(value: str, field_name: str = "base_path") -> str:
    common.check(
        value == "" or bool(_BASE_PATH.match(value)),
        field_name,
        f"{value!r} is not a usable key prefix",
        "Use path segments of letters, digits, '.', '_' and '-' separated by '/', "
        "without leading or trailing '/', or leave it empty",
    )
    return value


def kms_key_name(value: str, field_name: str = "kms_key_name") -> str:
    return cmek.key_name(value, field_name)


@dataclass(frozen=True, kw_only=True)
class ResultStoreArgs:
    project: str
    bucket_name: str
    location: str
    #: Objects whose custom time (their expiry) is at least this many days past go.
    days_since_custom_time: int = conventions.LIFECYCLE_DAYS_SINCE_CUSTOM_TIME
    #: Objects older than this go, custom time or not.
    max_age_days: int = conventions.LIFECYCLE_MAX_AGE_DAYS
    #: Cloud KMS key for CMEK; empty for Google-managed encryption.
    kms_key_name: str = ""
    #: Allow ``pulumi destroy`` to delete the bucket with its objects.
    force_destroy: bool = False
    #: Pulumi-level protection against deletion (prod stacks).
    protect: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        common.project_id(self.project)
        bucket_name(self.bucket_name)
        kms_key_name(self.kms_key_name)
        cmek.check_location(self.kms_key_name, self.location, "the result bucket")
        common.labels(self.labels)
        common.check(
            self.days_since_custom_time >= 0,
            "days_since_custom_time",
            "must not be negative",
            "Use 0 to delete results as soon as they expire",
        )
        common.check(
            self.max_age_days >= 1,
            "max_age_days",
            "must be at least 1",
            "Use a number of days longer than any result_expires",
        )


class ResultStore(pulumi.ComponentResource):
    """The result bucket and, with CMEK, the key grant its service agent needs."""

    bucket: gcp.storage.Bucket
    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ResultStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("result_store", "ResultStore"), name, None, opts)

        # The bucket cannot be created with a key its service agent cannot use.
        depends_on = cmek.grants_before(
            name,
            parent=self,
            project=args.project,
            service="storage.googleapis.com",
            key=args.kms_key_name,
            invoke_opts=common.invoke_options(self, opts),
        )
        encryption = None
        if args.kms_key_name:
            encryption = gcp.storage.BucketEncryptionArgs(default_kms_key_name=args.kms_key_name)

        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            name=args.bucket_name,
            project=args.project,
            location=args.location,
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=False),
            soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(retention_duration_seconds=0),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_custom_time=args.days_since_custom_time,
                        # Without this flag the provider drops a 0 and the rule
                        # would match every object.
                        send_days_since_custom_time_if_zero=args.days_since_custom_time == 0,
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=args.max_age_days),
                ),
            ],
            encryption=encryption,
            force_destroy=args.force_destroy,
            labels={**common.APP_LABEL, **args.labels},
            opts=common.child(self, depends_on=depends_on, protect=args.protect),
        )
        self.name = self.bucket.name
        self.register_outputs({"name": self.bucket.name, "url": self.bucket.url})
