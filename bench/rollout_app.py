"""One app replica for `bench rollout`: a small ASGI app served by uvicorn, as a user's app is served.

What is measured is uvicorn's own stop-signal handling, unchanged: on SIGTERM it stops
accepting connections, closes idle keep-alive connections, lets in-flight requests finish
(answering them with `Connection: close`), runs the lifespan shutdown and exits. Its
keep-alive idle timeout is its default (5 s, as Node's http server). Each request takes
0-20 ms, so requests are in flight whenever the stop signal comes.

Every answer carries `X-Method`, so the load script can count answered POSTs; the replica
counts the requests it handled per method, serves them at /_counts (read by the bench directly,
never through the proxy) and writes them to --counts on exit: more POSTs handled than the
clients sent would mean a POST was retried after it reached an app.

Run: `python -m bench.rollout_app --host 127.0.1.2 --port 3000 --name api.1 --counts FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

WORK_S = 0.02
HEALTH_PATH = "/api/health"
COUNTS_PATH = "/_counts"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Replica:
    """The ASGI application: JSON answers, per-method counts, counts written at shutdown."""

    def __init__(self, name: str, counts_file: Path) -> None:
        self.name = name
        self.counts_file = counts_file
        self.counts: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.counts_file.write_text(json.dumps(self.counts))
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            more = bool(message.get("more_body", False))
        method, path = scope["method"], scope["path"]
        if path == COUNTS_PATH:
            body = json.dumps(self.counts).encode()
        elif path == HEALTH_PATH:
            body = b'{"status": "ok"}'
        else:
            await asyncio.sleep(random.uniform(0, WORK_S))
            self.counts[method] += 1
            body = json.dumps({"task": self.name, "method": method, "path": path}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-method", method.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--counts", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(
        Replica(args.name, args.counts),
        host=args.host,
        port=args.port,
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
