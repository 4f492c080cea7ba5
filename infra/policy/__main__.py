"""The celery-gcs policy pack: ``pulumi preview --policy-pack infra/policy``.

The Pulumi CLI runs this directory in the virtualenv PulumiPolicy.yaml names,
with ``requirements.txt`` installed; the rules come from the checkout around
it (``stack_rules.py`` here, the backend's ``celery_gcs.conventions``).
"""

from policy_pack import PACK_NAME, policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name=PACK_NAME,
    policies=policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
)
