"""The worker image: an Artifact Registry repository, and the image built into it or given.

The repository always exists (CI can push there and hand the stack an image);
cleanup policies delete untagged images after a week and anything older than
``delete_older_than_days``, while the ``keep_versions`` newest are always kept,
so a deployed digest is not deleted under a running Deployment.

The image is either built from ``worker_image/`` with pulumi-docker-build and
pushed, or given as ``REGISTRY/PATH@sha256:...``. Either way the worker runs it
by digest: a tag can move, a digest cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from . import common

#: The worker image's Dockerfile, relative to the build context: a checkout of
#: celery-gcs (the Dockerfile installs its backend, so the context is its root).
DOCKERFILE = Path("worker_image") / "Dockerfile"
IMAGE_NAME = "worker"
READER_ROLE = "roles/artifactregistry.reader"

_PINNED = re.compile(
    r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+)?@(sha256:[0-9a-f]{64})$"
)


def pinned_image(value: str, field_name: str = "image") -> str:
    common.check(
        value == "" or bool(_PINNED.match(value)),
        field_name,
        f"{value!r} is not an image reference pinned by digest",
        "Use REGISTRY/PATH[:TAG]@sha256:<64 hex digits> (docker buildx imagetools inspect "
        "prints the digest), or leave it empty to build worker_image/",
    )
    return value


def digest_of(image: str) -> str:
    match = _PINNED.match(image)
    if not match:
        raise ValueError(f"not pinned by digest: {image!r}")
    return match.group(3)


@dataclass(frozen=True, kw_only=True)
class RegistryArgs:
    project: str
    location: str
    repository_id: str
    #: An existing image pinned by digest; empty to build the worker image from ``context``.
    image: str = ""
    #: A checkout of celery-gcs, where ``worker_image/Dockerfile`` is built; needed without ``image``.
    context: str = ""
    #: Tag pushed alongside the digest (the stack name), for people reading the registry.
    tag: str = "latest"
    #: Members (``serviceAccount:...``) that pull from the repository: the nodes.
    readers: tuple[pulumi.Input[str], ...] = ()
    keep_versions: int = 10
    delete_older_than_days: int = 30
    untagged_older_than_days: int = 7
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        common.project_id(self.project)
        common.dns_label(self.repository_id, "repository_id")
        pinned_image(self.image)
        # An installed package cannot guess where a checkout is: the program says.
        common.check(
            bool(self.image or self.context),
            "image",
            "is empty and no build context is given",
            "Set image to a worker image pinned by digest, or build_context to a checkout of "
            "celery-gcs (the repository's own program passes its root)",
        )
        common.check(
            self.keep_versions >= 1,
            "keep_versions",
            "must keep at least one version",
            "Keep at least the deployed image",
        )


def _days(days: int) -> str:
    return f"{days * 86_400}s"


class Registry(pulumi.ComponentResource):
    repository: gcp.artifactregistry.Repository
    #: ``REGISTRY/PATH@sha256:...``: what the Deployment runs.
    image_ref: pulumi.Output[str]
    digest: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("registry", "Registry"), name, None, opts)
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=args.project,
            location=args.location,
            repository_id=args.repository_id,
            format="DOCKER",
            description="celery-gcs worker images",
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED",
                        older_than=_days(args.untagged_older_than_days),
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY",
                        older_than=_days(args.delete_older_than_days),
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=args.keep_versions
                    ),
                ),
            ],
            labels={**common.APP_LABEL, **args.labels},
            opts=common.child(self),
        )
        for i, member in enumerate(args.readers):
            gcp.artifactregistry.RepositoryIamMember(
                f"{name}-reader-{i}",
                project=args.project,
                location=args.location,
                repository=self.repository.repository_id,
                role=READER_ROLE,
                member=member,
                opts=common.child(self),
            )

        if args.image:
            self.image = None
            self.image_ref = pulumi.Output.from_input(args.image)
            self.digest = pulumi.Output.from_input(digest_of(args.image))
        else:
            image_name = self.repository.registry_uri.apply(lambda uri: f"{uri}/{IMAGE_NAME}")
            token = gcp.organizations.get_client_config_output(
                opts=pulumi.InvokeOutputOptions(parent=self)
            ).access_token
            self.image = docker_build.Image(
                f"{name}-image",
                context=docker_build.BuildContextArgs(location=args.context),
                dockerfile=docker_build.DockerfileArgs(location=str(Path(args.context) / DOCKERFILE)),
                platforms=[docker_build.Platform.LINUX_AMD64],
                push=True,
                tags=[image_name.apply(lambda n: f"{n}:{args.tag}")],
                registries=[
                    docker_build.RegistryArgs(
                        address=f"{args.location}-docker.pkg.dev",
                        username="oauth2accesstoken",
                        password=pulumi.Output.secret(token),
                    )
                ],
                opts=common.child(self),
            )
            self.digest = self.image.digest
            self.image_ref = pulumi.Output.concat(image_name, "@", self.image.digest)
        self.register_outputs(
            {
                "repository": self.repository.registry_uri,
                "image": self.image_ref,
                "digest": self.digest,
            }
        )
