"""The `acr-publish-guardrails` policy pack: wires the pure rules of `rules.py` into pulumi_policy.

`pulumi preview --policy-pack policies` runs this file as `__main__` (pulumi.policy's runner uses
`runpy.run_path(..., run_name="__main__")`); only then is the pack served, because the PolicyPack
constructor starts a gRPC server and never returns. Importing the file under another name builds the
policy objects (`POLICIES`) and nothing else, which is how the tests exercise the real handlers.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

try:
    import rules  # run by the Pulumi CLI: the pack directory is sys.path[0]
except ModuleNotFoundError:
    from policies import rules  # imported from the project root (the tests)

_LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}

SECRETNESS_NOT_VISIBLE = (
    "pulumi_policy unwraps secrets before a policy sees the inputs, so whether registry.password is a "
    "secret cannot be judged here; tests/program/test_policies_stacks.py checks it for every stack under the "
    "Pulumi mocks (see policies/README.md)"
)


def resource_input(args: ResourceValidationArgs) -> rules.ResourceInput:
    """The plain-data view of what the policy SDK hands a resource policy."""
    return rules.ResourceInput(
        type=args.resource_type,
        name=args.name,
        stack=rules.stack_from_urn(args.urn),
        props=args.props,
        protect=bool(args.opts.protect) if args.opts is not None else False,
        secret_paths=None,
    )


def _validator(rule: rules.Rule):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.resource_types:
            return
        if rule.needs_secret_paths:
            registry = args.props.get("registry")
            if registry is not None and registry.get("password") not in (None, ""):
                args.not_applicable(SECRETNESS_NOT_VISIBLE)
            return
        for message in rule.check(resource_input(args)):
            report_violation(message, args.urn)

    return validate


def _stack_validator(rule: rules.Rule):
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for resource in args.resources:
            if resource.resource_type not in rule.resource_types:
                continue
            view = rules.ResourceInput(type=resource.resource_type, name=resource.name,
                                       stack=rules.stack_from_urn(resource.urn), props=resource.props)
            for message in rule.check(view):
                report_violation(message, resource.urn)

    return validate


def _policies(kind, rule_table, validator) -> list:
    """One policy of `kind` per rule of `rule_table`: the rule's name, description and level, `validator(rule)`."""
    return [kind(name=rule.name, description=rule.description, enforcement_level=_LEVELS[rule.enforcement],
                 validate=validator(rule)) for rule in rule_table]


POLICIES: list[ResourceValidationPolicy] = _policies(ResourceValidationPolicy, rules.RULES, _validator)
STACK_POLICIES: list[StackValidationPolicy] = _policies(StackValidationPolicy, rules.STACK_RULES, _stack_validator)


if __name__ == "__main__":
    PolicyPack(
        name=rules.PACK_NAME,
        enforcement_level=EnforcementLevel.MANDATORY,
        policies=list(POLICIES) + list(STACK_POLICIES),
    )
