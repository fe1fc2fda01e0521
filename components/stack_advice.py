"""How the registry client's advice names this stack's settings: the client knows no setting of its own, so every
client the program makes for the stack's registry gets `STACK_ADVICE`, and every client for a promotion's source
registry `SOURCE_ADVICE` (its host comes from the source stack, never from this stack's registry settings), and
every client for another host a Dockerfile names (a base image's registry) `BASE_ADVICE`."""
from __future__ import annotations

from registryclient import Advice

STACK_ADVICE = Advice(
    server="acr-publish:registry.server",
    server_source=" (or the region / instanceId it is derived from)",
    no_credentials=("the stack has no registry credentials; set acr-publish:registry.username in the stack file and "
                    "the password with `pulumi config set --secret acr-publish:registryPassword <password>` "
                    "(Enterprise stacks get a temporary token instead)"),
    start_loopback="start the local registry (make up)",
)

SOURCE_ADVICE = Advice(
    server="the source stack's `registry` export (acr-publish:promoteFrom names the source stack)",
    no_credentials=("the source registry requires a login; set acr-publish:sourceUsername in the stack file and the "
                    "password with `pulumi config set --secret acr-publish:sourcePassword <password>` (an Enterprise "
                    "source gets a temporary token instead)"),
    start_loopback="start the source stack's registry",
)

BASE_ADVICE = Advice(
    server="the Dockerfile's FROM reference (or mirror the base into the stack's registry and name it there)",
    no_credentials=("that registry requires a login; `docker login` to it (the Docker config's credentials for that "
                    "host are used), or mirror the base into the stack's registry"),
    start_loopback="start that registry",
)
