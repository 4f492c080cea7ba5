"""The smoke test after every ``pulumi up``: a Job, run as the workers run, that a result and a chord go through.

The Job runs ``python -m celery_gcs.worker.smoke`` (the backend's module: the
stores reachable, a result stored and read back, a chord of 10 through the
deployed workers) from the workers' image, in their namespace, as their
Kubernetes service account (so their Google identity), with their environment,
broker Secret and CA, and under a NetworkPolicy with the workers' rules: what
it reaches, a worker reaches.

pulumi-kubernetes waits for a Job to complete and fails the update when it
fails (its Job awaiter: https://www.pulumi.com/registry/packages/kubernetes/api-docs/batch/v1/job/), so ``pulumi up`` fails naming the Job, whose log (``kubectl logs
job/PREFIX-smoke-test -n NAMESPACE``) says which check failed and why. It is
created after the workers are ready and their autoscaler exists (with
``minReplicas`` 0, its own tasks wake KEDA up). A new run on every ``up``: the
pod template carries the time of the run, and a Job's template cannot change
in place, so the Job is replaced. The stack output ``smoke_test_passed_at`` is
the completion time of the run that passed. Finished Jobs are deleted after a
day (``ttlSecondsAfterFinished``).
"""

from __future__ import annotations

import pulumi_kubernetes as k8s

from . import pods

#: The module the Job runs; the worker image has it.
COMMAND = ["/usr/bin/tini", "--", "python", "-m", "celery_gcs.worker.smoke"]
#: Seconds the chord may take (the module's --timeout), and the Job as a whole.
CHORD_TIMEOUT = 300
DEADLINE = 600
#: How long ``pulumi up`` waits for the Job: past DEADLINE (the provider's default is 10 minutes).
AWAIT = "15m"
#: A day: long enough to read the log of a failed run.
TTL_AFTER_FINISHED = 86400
RUN_ANNOTATION = "celery-gcs.dev/run"
RESOURCES = {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "100Mi"}


def name(instance: str) -> str:
    return f"{instance}-smoke-test"


def selector(instance: str) -> dict[str, str]:
    return pods.selector("celery-smoke-test", instance)


def job_spec(
    *,
    instance: str,
    labels: dict[str, str],
    service_account: str,
    image: object,
    env: list[k8s.core.v1.EnvVarArgs],
    mounts: list[k8s.core.v1.VolumeMountArgs],
    volumes: list[k8s.core.v1.VolumeArgs],
    run: str,
) -> k8s.batch.v1.JobSpecArgs:
    """One try, within DEADLINE seconds; the pod restricted as the workers' are."""
    core = k8s.core.v1
    container = core.ContainerArgs(
        name="smoke-test",
        image=image,
        command=COMMAND,
        args=["--timeout", str(CHORD_TIMEOUT)],
        env=env,
        resources=pods.guaranteed(RESOURCES),
        volume_mounts=mounts,
        security_context=pods.container_security(),
    )
    return k8s.batch.v1.JobSpecArgs(
        backoff_limit=0,
        active_deadline_seconds=DEADLINE,
        ttl_seconds_after_finished=TTL_AFTER_FINISHED,
        template=core.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(
                labels={**selector(instance), **labels}, annotations={RUN_ANNOTATION: run}
            ),
            spec=core.PodSpecArgs(
                service_account_name=service_account,
                automount_service_account_token=False,
                restart_policy="Never",
                security_context=pods.pod_security(),
                containers=[container],
                volumes=volumes,
            ),
        ),
    )
