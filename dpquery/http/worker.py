"""dpquery's gunicorn worker: gunicorn's sync worker, plus two things.

1. It dies with its master. A worker whose master was killed with SIGKILL
   would otherwise keep the listening socket (and the port) until its own
   idle loop noticed, about a minute later. On Linux the kernel sends the
   worker SIGKILL when its parent dies (`prctl(PR_SET_PDEATHSIG)`); elsewhere
   a watchdog thread checks the parent once a second. A query in flight then
   keeps its charge, as when a worker is killed.
2. Requests gunicorn itself refuses (a header over `limit_request_field_size`,
   a request line over `limit_request_line`, malformed HTTP) get dpquery's
   JSON error shape, not gunicorn's HTML page. The message never echoes the
   request.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys
import threading
import time

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.sync import SyncWorker

from dpquery.http.headers import SECURITY_HEADERS

PR_SET_PDEATHSIG = 1
WATCHDOG_SECONDS = 1.0

# gunicorn's refusal -> (status, reason, code, message)
REFUSALS = [
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "header_too_large",
     "a request header is too large, or there are too many headers (limits: {field} bytes "
     "per header, {fields} headers); send shorter headers"),
    (http_errors.LimitRequestLine, 414, "URI Too Long", "uri_too_long",
     "the request line is longer than {line} bytes; send a shorter URL and put the query "
     "in the JSON body"),
]
APPLICATION_FAULTS = tuple(getattr(http_errors, name) for name in (
    "InvalidResponseHeader", "InvalidResponseHeaderName", "ConfigurationProblem")
    if hasattr(http_errors, name))
MALFORMED = (400, "Bad Request", "invalid_request",
             "the request is not valid HTTP/1.1; send a well-formed request")
INTERNAL = (500, "Internal Server Error", "internal",
            "internal error: this is a bug in dpquery; see the server log")


class Worker(SyncWorker):
    def init_process(self) -> None:
        die_with_parent(self.ppid)
        super().init_process()

    def handle_error(self, req, client, addr, exc) -> None:
        status, reason, code, message = refusal(exc, self.cfg)
        if status >= 500:
            self.log.exception("error handling a request")
        else:
            self.log.warning("refused a request from %s: %s", (addr or ("-",))[0], code)
        try:
            util.write_nonblock(client, json_response(status, reason, code, message))
        except Exception:
            self.log.debug("failed to send an error response")


def refusal(exc, cfg) -> tuple[int, str, str, str]:
    limits = {"field": cfg.limit_request_field_size, "fields": cfg.limit_request_fields,
              "line": cfg.limit_request_line}
    for kind, status, reason, code, message in REFUSALS:
        if isinstance(exc, kind):
            return status, reason, code, message.format(**limits)
    if isinstance(exc, APPLICATION_FAULTS) or not isinstance(exc, http_errors.ParseException):
        return INTERNAL
    return MALFORMED


def json_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "Connection: close",
            "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Cache-Control: no-store", *(f"{k}: {v}" for k, v in SECURITY_HEADERS.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def die_with_parent(parent: int) -> None:
    """Be killed when the process `parent` (the gunicorn master) dies."""
    if not _pdeathsig():
        threading.Thread(target=_watch, args=(parent,), name="dpquery-parent-watch",
                         daemon=True).start()
    if os.getppid() != parent:  # the master died before the signal was armed
        os._exit(1)


def _pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCHDOG_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)
