"""The web blueprint object, shared by the view modules (console, admin, public)."""
from __future__ import annotations

from flask import Blueprint

web_bp = Blueprint("web", __name__, template_folder="templates",
                   static_folder="static", static_url_path="/web/static")
