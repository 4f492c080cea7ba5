"""The worker image: an Artifact Registry repository, and the image built into it or given.

The repository always exists (CI can push there and hand the stack an image);
cleanup policies delete untagged images after a week and anything older than
``delete_older_than_days``, while the ``keep_versions`` newest are always kept,
so a deployed digest is not deleted under a running Deployment.

The image is either built from ``worker_image/`` with pulumi-docker-build and
pushed, or given as ``REGISTRY/PATH@sha256:...``. Either way the worker runs it
by digest: a tag can move, a digest cannot.

A built image holds the team's tasks: the ``APP_DIR`` build argument is the
app's directory and ``APP_REQUIREMENTS`` its hashed requirements file, both
inside the build context (the Pulumi project), and ``CELERY_APP`` the app.
:func:`app_build_args` checks, before anything is built, that the app's module
is in that directory: otherwise every pod would exit 78 and crash-loop.

The repository is protected with the stack, and the image resource keeps its
pushed tags when Pulumi deletes or replaces it (``retain_on_delete``): a
running Deployment may still pull that digest, and the cleanup policies, not
Pulumi, decide when old images go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from . import cmek, common

#: The worker image's Dockerfile, relative to the build context: a checkout of
#: celery-gcs (the Dockerfile installs its backend, so the context is its root).
DOCKERFILE = Path("worker_image") / "Dockerfile"
IMAGE_NAME = "worker"
READER_ROLE = "roles/artifactregistry.reader"
#: The Dockerfile's defaults: an app directory without tasks, no requirements.
DEFAULT_APP_DIR = "worker_image/app"
DEFAULT_APP_REQUIREMENTS = "worker_image/app/requirements.txt"

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


_ARTIFACT_REGISTRY = re.compile(r"^([a-z0-9-]+)-docker\.pkg\.dev/([a-z0-9-]+)/([a-z0-9._-]+)/")


def repository_of(image: str) -> tuple[str, str, str] | None:
    """(project, location, repository) of an Artifact Registry image; None for other registries,
    where the nodes need pull access of their own (docs/environments.md)."""
    match = _ARTIFACT_REGISTRY.match(image)
    return (match.group(2), match.group(1), match.group(3)) if match else None


def digest_of(image: str) -> str:
    match = _PINNED.match(image)
    if not match:
        raise ValueError(f"not pinned by digest: {image!r}")
    return match.group(3)


def _inside(context: Path, relative: str, field_name: str) -> Path:
    path = (context / relative).resolve()
    common.check(
        not Path(relative).is_absolute() and context.resolve() in (path, *path.parents),
        field_name,
        f"{relative!r} is not inside the Pulumi project ({context})",
        "Use a path relative to the project's root (the image's build context)",
    )
    return path


def _hashed(requirements: Path) -> list[str]:
    """Requirement lines of a requirements file that carry no ``--hash``."""
    logical = requirements.read_text().replace("\\\n", " ").splitlines()
    lines = [line.split(" #")[0].strip() for line in logical]
    return [line for line in lines if line and line[0] not in "#-" and "--hash=" not in line]


def app_build_args(
    *, context: str, app_dir: str, requirements: str, celery_app: str
) -> dict[str, str]:
    """The worker image's build arguments for a team's app, checked against the build context.

    Fails (naming ``app_dir``, ``app_requirements`` or ``celery_app``) when the
    directory or file is missing or outside the context, a requirement has no
    hash, or the app's module is not in the directory.
    """
    root = Path(context)
    app_dir = app_dir or DEFAULT_APP_DIR
    requirements = requirements or DEFAULT_APP_REQUIREMENTS
    directory = _inside(root, app_dir, "app_dir")
    common.check(
        directory.is_dir(),
        "app_dir",
        f"{app_dir!r} is not a directory of the Pulumi project",
        "Set it to the directory holding your Celery app's package",
    )
    file = _inside(root, requirements, "app_requirements")
    common.check(
        file.is_file(),
        "app_requirements",
        f"{requirements!r} is not a file of the Pulumi project",
        "Set it to your app's requirements file, or leave it empty for none",
    )
    unhashed = _hashed(file)
    common.check(
        not unhashed,
        "app_requirements",
        f"{requirements!r} has requirements without hashes ({', '.join(unhashed[:3])})",
        "The image installs them with --require-hashes: generate the file with "
        "`uv pip compile --generate-hashes` or `pip-compile --generate-hashes`",
    )
    module = celery_app.split(":", 1)[0].split(".")
    candidates = [directory.joinpath(*module[:-1], f"{module[-1]}.py"),
                  directory.joinpath(*module, "__init__.py")]  # fmt: skip
    common.check(
        any(c.is_file() for c in candidates),
        "celery_app",
        f"{celery_app!r} is not in {app_dir}, the app directory the image is built from "
        f"(no {candidates[0].relative_to(root)} or {candidates[1].relative_to(root)})",
        "Set appDir to the directory holding your app's package (and appRequirements to its "
        "hashed requirements), or image to a prebuilt image",
    )
    return {
        "APP_DIR": app_dir,
        "APP_REQUIREMENTS": requirements,
        "CELERY_APP": celery_app,
    }


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
    #: Build arguments of a built image (:func:`app_build_args`).
    build_args: dict[str, str] = field(default_factory=dict)
    #: Pulumi ``protect`` on the repository (its images are what the workers run).
    protect: bool = False
    #: Members (``serviceAccount:...``) that pull the image: every node pool's account. They
    #: read the stack's repository and, for a given image in another Artifact Registry
    #: repository, that one.
    readers: pulumi.Input[Sequence[str]] = ()
    keep_versions: int = 10
    delete_older_than_days: int = 30
    untagged_older_than_days: int = 7
    labels: dict[str, str] = field(default_factory=dict)
    #: Cloud KMS key in the repository's location (set at creation); empty: Google-managed.
    kms_key_name: str = ""

    def __post_init__(self) -> None:
        common.project_id(self.project)
        common.dns_label(self.repository_id, "repository_id")
        cmek.key_name(self.kms_key_name)
        cmek.check_location(self.kms_key_name, self.location, "the image repository")
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


def cleanup_policies(args: RegistryArgs) -> list[gcp.artifactregistry.RepositoryCleanupPolicyArgs]:
    """Untagged images go after a week, anything after a month; the newest few always stay."""
    ar = gcp.artifactregistry

    def delete(policy_id: str, tag_state: str, days: int) -> ar.RepositoryCleanupPolicyArgs:
        return ar.RepositoryCleanupPolicyArgs(
            id=policy_id,
            action="DELETE",
            condition=ar.RepositoryCleanupPolicyConditionArgs(
                tag_state=tag_state, older_than=_days(days)
            ),
        )

    return [
        delete("delete-untagged", "UNTAGGED", args.untagged_older_than_days),
        delete("delete-old", "ANY", args.delete_older_than_days),
        ar.RepositoryCleanupPolicyArgs(
            id="keep-recent",
            action="KEEP",
            most_recent_versions=ar.RepositoryCleanupPolicyMostRecentVersionsArgs(
                keep_count=args.keep_versions
            ),
        ),
    ]


class Registry(pulumi.ComponentResource):
    repository: gcp.artifactregistry.Repository
    #: ``REGISTRY/PATH@sha256:...``: what the Deployment runs.
    image_ref: pulumi.Output[str]
    digest: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(common.token("registry", "Registry"), name, None, opts)
        after_grant = cmek.grants_before(
            name,
            parent=self,
            project=args.project,
            service="artifactregistry.googleapis.com",
            key=args.kms_key_name,
            invoke_opts=common.invoke_options(self, opts),
        )
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=args.project,
            location=args.location,
            repository_id=args.repository_id,
            format="DOCKER",
            description="celery-gcs worker images",
            cleanup_policy_dry_run=False,
            cleanup_policies=cleanup_policies(args),
            labels={**common.APP_LABEL, **args.labels},
            kms_key_name=args.kms_key_name or None,
            opts=common.child(self, depends_on=after_grant, protect=args.protect),
        )
        image_repository = repository_of(args.image) if args.image else None
        # One grant per member; the members of an existing cluster are known once it is read.
        pulumi.Output.from_input(args.readers).apply(
            lambda members: self._grant_readers(name, args, list(members), image_repository)
        )
        if args.image:
            self.image = None
            self.image_ref = pulumi.Output.from_input(args.image)
            self.digest = pulumi.Output.from_input(digest_of(args.image))
        else:
            self._build(name, args, common.invoke_options(self, opts))
        self.register_outputs(
            {
                "repository": self.repository.registry_uri,
                "image": self.image_ref,
                "digest": self.digest,
            }
        )

    def _grant_readers(
        self,
        name: str,
        args: RegistryArgs,
        members: list[str],
        image_repository: tuple[str, str, str] | None,
    ) -> None:
        for i, member in enumerate(members):
            gcp.artifactregistry.RepositoryIamMember(
                f"{name}-reader-{i}",
                project=args.project,
                location=args.location,
                repository=self.repository.repository_id,
                role=READER_ROLE,
                member=member,
                opts=common.child(self),
            )
            if image_repository is not None and image_repository != (
                args.project,
                args.location,
                args.repository_id,
            ):
                project, location, repository = image_repository
                gcp.artifactregistry.RepositoryIamMember(
                    f"{name}-image-reader-{i}",
                    project=project,
                    location=location,
                    repository=repository,
                    role=READER_ROLE,
                    member=member,
                    opts=common.child(self),
                )

    def _build(
        self, name: str, args: RegistryArgs, invoke_opts: pulumi.InvokeOutputOptions
    ) -> None:
        """Build ``worker_image/`` and push it to the repository, with a short-lived token."""
        image_name = self.repository.registry_uri.apply(lambda uri: f"{uri}/{IMAGE_NAME}")
        token = gcp.organizations.get_client_config_output(opts=invoke_opts).access_token
        self.image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=args.context),
            dockerfile=docker_build.DockerfileArgs(location=str(Path(args.context) / DOCKERFILE)),
            platforms=[docker_build.Platform.LINUX_AMD64],
            build_args=args.build_args,
            push=True,
            tags=[image_name.apply(lambda n: f"{n}:{args.tag}")],
            registries=[
                docker_build.RegistryArgs(
                    address=f"{args.location}-docker.pkg.dev",
                    username="oauth2accesstoken",
                    password=pulumi.Output.secret(token),
                )
            ],
            # Deleting or replacing the resource must not delete pushed tags a
            # Deployment may still run; the cleanup policies expire them.
            opts=common.child(self, retain_on_delete=True),
        )
        self.digest = self.image.digest
        self.image_ref = pulumi.Output.concat(image_name, "@", self.image.digest)
