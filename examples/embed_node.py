"""Start and stop a meshsync node from a worker thread, as an Android app does.

    python examples/embed_node.py HOME [--seconds N]

HOME is an enrolled home (``meshsync init`` + ``enroll``). The node runs on a thread
of its own (no signal handlers); a worker thread starts it, writes one record through
the local API with the node's token, reads it back, prints the node's events and
stops it. Exits 0 when the record round-tripped and the node stopped cleanly.
See docs/android.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from typing import Any

from meshsync.daemon.embed import NodeEvent, PlatformHooks, start


def call(url: str, token: str, method: str = "GET", body: Any = None) -> Any:
    """One request to the node's local API (never through a proxy)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not the local API: {url}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=15) as reply:
        return json.loads(reply.read())


def worker(home: str, seconds: float, result: dict[str, Any]) -> None:
    """What an app's background thread does: start, use, stop."""
    hooks = PlatformHooks(default_gateway=lambda: None,  # an app asks WifiManager
                          is_hotspot=lambda: False)
    node = start(home, config_overrides={"api": "127.0.0.1:0", "listen": "127.0.0.1:0",
                                         "discovery": ["gateway", "static"]},
                 on_event=lambda e: print("event:", e.kind, dict(e.data), flush=True),
                 platform=hooks)
    try:
        print("node", node.device_id[:8], "API at", node.api_url, flush=True)
        call(f"{node.api_url}/api/records/notes/hello", node.token, "PUT",
             {"fields": {"text": "halo dari thread"}})
        got = call(f"{node.api_url}/api/records/notes/hello", node.token)
        result["record"] = got
        time.sleep(seconds)
    finally:
        node.stop()
    events: list[NodeEvent] = list(node.events(timeout=1))
    result["stopped"] = bool(events) and events[-1].kind == "stopped" \
        and events[-1].data["error"] is None


def main() -> int:
    """Parse the arguments, run the worker thread, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home")
    parser.add_argument("--seconds", type=float, default=0.5, help="how long to run")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=worker, args=(args.home, args.seconds, result))
    thread.start()
    thread.join()
    ok = "halo dari thread" in json.dumps(result.get("record")) and result.get("stopped")
    print("ok" if ok else f"FAILED: {result}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
