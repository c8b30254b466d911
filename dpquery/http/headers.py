"""Security headers on every response (API, web console, error pages).

The console's pages load their script and stylesheet from /web/static and
have no inline <script> or <style>; the charts position ticks and bars with
`style="..."` attributes, which `style-src-attr 'unsafe-inline'` allows (no
script can run from a style attribute). Nothing may frame any page. When the
service is served over HTTPS (the request arrived so, or `secure_cookies` says a
TLS proxy is in front), responses also tell the browser to use HTTPS only for a
year (HSTS); the local demo over plain HTTP does not send it.
"""
from __future__ import annotations

from flask import current_app, has_request_context, request

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


HSTS = "max-age=31536000"


def add_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    secure = has_request_context() and (
        request.is_secure or current_app.config.get("SESSION_COOKIE_SECURE"))
    if secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response
