"""An application on the Python API: a small JSON web endpoint that starts runs and relays approvals.

    RATCHET_HOME=.ratchet-demo/desk/home python examples/approval_desk.py --port 8080
    RATCHET_HOME=.ratchet-demo/desk/home ratchet supervise      # in another shell: it drives the runs

    POST /runs                       {"machine": "renewal_review", "input": {...}, "id": "renewal-acme"}
    GET  /runs?status=waiting        the runs (filters: status, machine, state)
    GET  /runs/ID[?wait=settled]     one run (wait: block until it waits for someone or ends)
    POST /runs/ID/approve            {"by": "alice", "comment": "..."}   (also /reject, /cancel)

A relayed decision is the same inbox file `ratchet approve` writes, so the journal tells
the same story whoever clicked. The endpoint then waits for the supervisor's answer and
says whether the decision was applied or refused, and why (not an approver, not
waiting for it). It trusts the `by` field: put it behind your own authentication. It
only ever writes inbox files and new runs; `ratchet supervise` does all the work.
Standard library only, besides Ratchet.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine import Ratchet
from engine.errors import EngineError, InvalidMessageError, UnknownRunError, WaitTimeoutError
from journal import JournalError, TriggerRefused

ANSWER_TIMEOUT = 10.0  # seconds to wait for the supervisor to apply a relayed decision


class Desk(BaseHTTPRequestHandler):
    ratchet: Ratchet  # set by serve()

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _get(self, parts: list[str], query: dict[str, str]) -> tuple[int, Any]:
        if parts == ["runs"]:
            runs = self.ratchet.list(status=query.get("status"), machine=query.get("machine"),
                                     state=query.get("state"))
            return 200, [_plain(run) for run in runs]
        if len(parts) == 2 and parts[0] == "runs":
            if "wait" in query:
                return 200, _plain(self.ratchet.wait(parts[1], until=query["wait"], timeout=ANSWER_TIMEOUT))
            return 200, _plain(self.ratchet.get(parts[1]))
        return 404, {"error": f"no such page: /{'/'.join(parts)}"}

    def _post(self, parts: list[str], query: dict[str, str]) -> tuple[int, Any]:
        body = self._body()
        if parts == ["runs"]:
            run_id = self.ratchet.start(body["machine"], body.get("input") or {}, id=body.get("id"),
                                        by=body.get("by"))
            return 201, {"id": run_id}
        if len(parts) == 3 and parts[0] == "runs" and parts[2] in ("approve", "reject", "cancel"):
            run_id, what = parts[1], parts[2]
            if what == "cancel":
                sent = self.ratchet.cancel(run_id, by=body["by"], reason=body.get("reason"))
            else:
                sent = self.ratchet.send(run_id, what, by=body["by"], comment=body.get("comment"),
                                         data=body.get("data"))
            run = self.ratchet.wait(run_id, after=sent, timeout=ANSWER_TIMEOUT)  # the supervisor's answer
            answer = next((r for r in self.ratchet.history(run_id)[sent.seq:]  # the records after the check
                           if (getattr(r, "source_file", None) or "").endswith(sent.path.name)), None)
            applied = answer is not None and not isinstance(answer, TriggerRefused)
            refusal = answer.reason if isinstance(answer, TriggerRefused) else None
            return 200, {"applied": applied, "reason": refusal, "file": sent.path.name, "run": _plain(run)}
        return 404, {"error": f"no such page: /{'/'.join(parts)}"}

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _answer(self, handler: Any) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            status, payload = handler([p for p in url.path.split("/") if p], query)
        except UnknownRunError as exc:
            status, payload = 404, {"error": str(exc)}
        except WaitTimeoutError as exc:
            status, payload = 504, {"error": str(exc)}
        except InvalidMessageError as exc:
            status, payload = 409, {"error": str(exc)}
        except (EngineError, JournalError, KeyError, ValueError) as exc:  # a bad request, said in one line
            status, payload = 400, {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(payload, default=_iso).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"approval_desk: {format % args}\n")


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)  # datetimes as ISO 8601


def _plain(run: Any) -> dict[str, Any]:
    return dataclasses.asdict(run)


def serve(ratchet: Ratchet, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundDesk", (Desk,), {"ratchet": ratchet})
    return ThreadingHTTPServer((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (printed)")
    parser.add_argument("--machines", default="machines", help="where machines given by name are found")
    args = parser.parse_args()
    server = serve(Ratchet(machines_dir=args.machines), args.host, args.port)
    print(f"approval desk on http://{server.server_address[0]}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop serving; nothing is lost (runs are journaled)
        server.serve_forever()


if __name__ == "__main__":
    main()
