"""The layout shows the architecture: the build-context engine, the layer audit and the registry client load
neither Pulumi nor the project's components; the components take the engine's default platform from it; the CLIs
run as modules."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import PROJECT_ROOT

ROOT = PROJECT_ROOT


# The packages with no Pulumi import, and what each must not load: importing every module of the package in a fresh
# interpreter (as the program, a CLI or a dynamic provider does) must load none of these top-level packages.
PULUMI_FREE = {
    "buildcontext": ("pulumi", "pulumi_docker", "pulumi_alicloud", "components", "cli"),
    "imageaudit": ("pulumi", "pulumi_docker", "pulumi_alicloud", "cli"),
    "registryclient": ("pulumi", "pulumi_docker", "pulumi_alicloud", "components", "cli"),
}


@pytest.mark.parametrize("package", sorted(PULUMI_FREE))
def test_the_engines_load_no_pulumi(package):
    code = (f"import sys, pkgutil, importlib, {package}\n"
            f"for m in pkgutil.iter_modules({package}.__path__): importlib.import_module('{package}.' + m.name)\n"
            f"print(sorted(n for n in sys.modules if n.split('.')[0] in {PULUMI_FREE[package]!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"{package} loads {proc.stdout.strip()}"


def test_settings_take_the_default_platform_from_the_engine():
    import buildcontext
    from components.config.schema import ImageSettings

    assert ImageSettings(name="web", context="app", dockerfile="app/Dockerfile").platform \
        is buildcontext.DEFAULT_PLATFORM


