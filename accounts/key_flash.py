"""A new key's plaintext, handed from the POST that made it to the next page view, once.

Post/Redirect/Get: the form's POST creates (or rotates, or reveals) the key, stores the plaintext
here in the server-side session and redirects; the page it came from pops it and shows it in a
dialog. Reloading that page shows nothing again and creates nothing; the secret never travels in
a URL or a cookie (the session lives in the database; only its id is in the cookie).
"""

from __future__ import annotations

from datetime import datetime

SESSION_KEY = "accounts.new_key"


def key_flash_set(request, *, api_key, plaintext: str, rotated_from=None) -> None:
    request.session[SESSION_KEY] = {
        "name": api_key.name,
        "prefix": api_key.prefix,
        "plaintext": plaintext,
        "rotated_from": None
        if rotated_from is None
        else {
            "prefix": rotated_from.prefix,
            "expires_at": rotated_from.expires_at.isoformat() if rotated_from.expires_at else None,
        },
    }


def key_flash_pop(request) -> dict | None:
    """The flashed key (removed from the session), or None."""
    session = getattr(request, "session", None)
    if session is None or SESSION_KEY not in session:
        return None
    flash = session.pop(SESSION_KEY)
    rotated = flash.get("rotated_from")
    if rotated and rotated.get("expires_at"):
        rotated["expires_at"] = datetime.fromisoformat(rotated["expires_at"])
    return flash
