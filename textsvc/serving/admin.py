"""The admin routes, behind the admin keys alone (never the inference keys): publishing models without a restart."""

from __future__ import annotations

from flask import Blueprint, jsonify

from textsvc.serving.guard import check_key, current_guard
from textsvc.serving.http import current_engine

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.before_request
def require_admin_key() -> None:
    check_key(current_guard().admin_keys, "admin", required=True)  # no admin keys configured: always refused


@admin.post("/reload")
def reload():
    """Pick up new, changed and removed model directories: `{added, replaced, removed, failed, unchanged}`."""
    engine = current_engine()
    changes = engine.reload()
    return jsonify(**changes, ready=engine.ready, failures=list(engine.failures.values()))
