"""acr-publish: declare the stack's ACR namespace and repositories, and publish each image: built here
(components/publish.py), or promoted (copied by digest) from the stack named by acr-publish:promoteFrom
(components/promotion.py).

Read the settings, run every check (no check runs inside an `apply`), declare, export. Every refusal of input and
every failed check is an AcrPublishError (errors.py); this is the one place that hands it, and Ctrl-C, to the
engine as a `pulumi.RunError`, which Pulumi's Python language host prints as its message alone, without a traceback.
"""
import pulumi

from components.config.engine import load_settings, registry_password_value, source_password_value
from components.interrupt import leave_quietly_on_interrupt
from components.image_index import MultiPlatformImage
from components.promotion import declare_promoted, plan_promotion, registry_instance
from components.publish import declare_published, plan_publish
from components.registry import declare_registry, registry_login
from errors import AcrPublishError

try:
    settings, _ = load_settings()
    login = registry_login(settings, registry_password_value())
    if settings.promotion is None:
        plan = plan_publish(settings, login)
        registry = declare_registry(settings, login, plan.repositories)
        images = declare_published(settings, plan, registry)
    else:
        promotion = plan_promotion(settings, login, source_password_value())
        registry = declare_registry(settings, login, promotion.repositories)
        images = declare_promoted(promotion, registry)
except AcrPublishError as err:
    raise pulumi.RunError(str(err)) from None
except KeyboardInterrupt as err:  # its message, such as the build-context scan's, or a plain one
    raise pulumi.RunError(str(err) or "interrupted (Ctrl-C)") from None

pulumi.export("registry", registry.server)
pulumi.export("registryInstance", registry_instance(settings))
pulumi.export(
    "images",
    {
        name: {"repository": img.repository, "tag": img.tag, "imageName": img.image_name, "ref": img.ref,
               "audit": img.audit.summary,
               # Each platform's build of a multi-platform image: its layer cache next time, and what to pull.
               **({"platforms": img.platforms} if isinstance(img, MultiPlatformImage) else {})}
        for name, img in images.items()
    },
)
leave_quietly_on_interrupt()
