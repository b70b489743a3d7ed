"""No application module over 600 lines (STYLE.md): past that, a module becomes a package split
by concern, named for what a reader looks for."""

from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 600
SKIPPED = {"migrations", "tests", ".work"}  # generated, test code, the bench's peer install


def application_packages() -> list[str]:
    """The project's own Django apps (devservers among them), the bench and the project package."""
    apps = [app for app in settings.INSTALLED_APPS if (ROOT / app / "__init__.py").is_file()]
    return [*apps, "bench", "config"]


def application_modules(package: str) -> list[Path]:
    return [
        path
        for path in sorted((ROOT / package).rglob("*.py"))
        if not SKIPPED.intersection(path.relative_to(ROOT).parts)
    ]


def test_no_application_module_is_over_600_lines():
    found = {package: application_modules(package) for package in application_packages()}
    assert {"core", "accounts", "billing", "credits", "proxy", "organizations", "dashboards"} <= set(found)
    assert all(found.values()), f"no module found in {[name for name, paths in found.items() if not paths]}"

    offenders = []
    for paths in found.values():
        for path in paths:
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > LIMIT:
                offenders.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not offenders, f"over {LIMIT} lines, split by concern: " + ", ".join(offenders)
