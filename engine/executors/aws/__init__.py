"""The aws executor: Auto Scaling groups, EC2 instances and RDS DB instances.

`executor` is the executor and its plugin; `asg`, `ec2` and `rds` each declare
their service's operations; `targets` resolves `kind:name` targets and `api`
calls AWS.
"""

from engine.executors.aws.api import NO_CREDENTIALS, NO_REGION
from engine.executors.aws.executor import PLUGIN, SPEC, AwsConfig, AwsExecutor
from engine.executors.aws.targets import EXECUTOR_NAME

__all__ = [
    "EXECUTOR_NAME",
    "NO_CREDENTIALS",
    "NO_REGION",
    "PLUGIN",
    "SPEC",
    "AwsConfig",
    "AwsExecutor",
]
