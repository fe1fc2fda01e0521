"""The layout shows the architecture: the build-context engine (buildcontext/) imports neither Pulumi nor the
project's components; the components take the engine's default platform from it; the CLIs run as modules."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from tests.harness import PROJECT_ROOT

ROOT = PROJECT_ROOT


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_engine_imports_no_pulumi_and_no_component():
    for path in sorted((ROOT / "buildcontext").glob("*.py")):
        found = _imports(path) & {"pulumi", "pulumi_docker", "pulumi_alicloud", "components", "cli"}
        assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"
    code = ("import sys, pkgutil, importlib, buildcontext\n"
            "for m in pkgutil.iter_modules(buildcontext.__path__): importlib.import_module('buildcontext.' + m.name)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('pulumi', 'components')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_settings_take_the_default_platform_from_the_engine():
    import buildcontext
    from components.config.schema import ImageSettings

    assert ImageSettings(name="web", context="app", dockerfile="app/Dockerfile").platform \
        is buildcontext.DEFAULT_PLATFORM


def test_the_audit_engine_imports_no_pulumi():
    for path in sorted((ROOT / "imageaudit").glob("*.py")):
        found = _imports(path) & {"pulumi", "pulumi_docker", "pulumi_alicloud", "cli"}
        assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"
    code = ("import sys, pkgutil, importlib, imageaudit\n"
            "for m in pkgutil.iter_modules(imageaudit.__path__): importlib.import_module('imageaudit.' + m.name)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'pulumi'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
