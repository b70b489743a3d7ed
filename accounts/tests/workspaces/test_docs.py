"""docs/workspaces.md's roles table is ``accounts.roles.ROLE_PERMISSIONS``."""

from __future__ import annotations

from pathlib import Path

from accounts.models import Role
from accounts.roles import ROLE_ORDER, ROLE_PERMISSIONS

DOC = Path(__file__).resolve().parents[3] / "docs" / "workspaces.md"
START, END = "<!-- roles-table:start -->", "<!-- roles-table:end -->"


def roles_table_markdown() -> str:
    labels = dict(Role.choices)
    lines = [
        "| Action | " + " | ".join(labels[role] for role in ROLE_ORDER) + " |",
        "|---|" + "---|" * len(ROLE_ORDER),
    ]
    for action, roles in ROLE_PERMISSIONS.items():
        lines.append(
            f"| `{action}` | " + " | ".join("✓" if role in roles else "—" for role in ROLE_ORDER) + " |"
        )
    return "\n".join(lines)


def test_the_docs_roles_table_is_the_permission_table():
    text = DOC.read_text(encoding="utf-8")
    documented = text.split(START, 1)[1].split(END, 1)[0].strip()
    expected = roles_table_markdown()
    assert documented == expected, f"docs/workspaces.md is stale; put this between the markers:\n{expected}"


def test_the_docs_name_the_header_and_every_audited_action():
    text = DOC.read_text(encoding="utf-8")
    assert "X-Workspace" in text
    for action in (
        "member.role_changed",
        "member.removed",
        "member.left",
        "invitation.created",
        "invitation.revoked",
        "invitation.accepted",
        "workspace.created",
        "workspace.updated",
        "workspace.deleted",
    ):
        assert f"`{action}`" in text, action
