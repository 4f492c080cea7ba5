"""The image as a stack builds it: infra/examples/Pulumi.dev.yaml's app, requirements and build arguments, run against the local stack.

Skipped, with the reason, unless podman can run here (root, podman, runc,
debootstrap) and tests/image runs on its own (`make image-test`).
"""

from __future__ import annotations

import pytest

from .rendered import stack_args
from .test_container import PROBE, container_env, start, wait_exit

pytestmark = pytest.mark.timeout(1800)  # a first run debootstraps the base


def test_the_image_the_dev_stack_builds_runs_its_celery_app_and_requirement(
    podman, build_image, containers, stack, backend_url, make_app
) -> None:
    args = stack_args("dev")
    build_args = args.app_build_args()
    assert build_args["CELERY_APP"] == args.worker.celery_app
    image = build_image(**build_args)

    # The app's requirement is in the venv; no installer is.
    done = podman(
        "run", "--rm", "--pull=never", *podman.SANDBOX, image, "sh", "-c",
        "python -c 'import humanize' && ls /opt/venv/bin | grep -cE '^(pip|uv)' || true",
    )  # fmt: skip
    assert done.stdout.strip() == "0"

    # The Deployment's environment names the app (CELERY_APP), as the stack sets it.
    env = container_env(stack, backend_url, CELERY_APP=args.worker.celery_app)
    name = start(podman, containers, image, env)
    assert podman("exec", name, *PROBE, "live", check=False).returncode == 0
    app = make_app()
    assert app.send_task("acme.tasks.add", args=(2, 3)).get(timeout=60) == 5
    assert app.send_task("acme.tasks.natural_size", args=(3_000_000,)).get(timeout=60) == "3.0 MB"
    podman("kill", "--signal", "TERM", name)
    assert wait_exit(podman, name) == 0
