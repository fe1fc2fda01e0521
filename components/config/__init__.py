"""Stack configuration -> validated, typed settings, before any resource is declared.

`schema` holds the settings types and key names; `rules` the table walker every map of settings goes through, with
the tables themselves in `registry_rules` and `image_rules` (`audit_rules`, `builders` and `promotion` for the
rest); `shown` formats values for messages; `paths` finds the repository root and resolves contexts and Dockerfiles;
`validate` turns a stack's values into `Settings`; `stackfile` reads `stacks/Pulumi.<stack>.yaml` for the CLIs; and
`engine` is the only module that reads `pulumi.Config`.
"""
