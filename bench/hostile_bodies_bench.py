"""Memory of ``vpngw serve`` under concurrent oversized chunked bodies (issue 15, item 1).

Starts a real ``vpngw serve --no-dataplane`` on SQLite, samples its resident set every
20 ms while N clients each stream M MB as ``Transfer-Encoding: chunked`` POSTs, and prints
the baseline, the peak and how much each client got to send before the server answered 413
and closed. Run: ``.venv/bin/python bench/hostile_bodies_bench.py [--streams 3] [--mb 150]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hardening.test_bounded_bodies import Outcome, RssSampler, stream_chunked  # noqa: E402
from tests.ops.server_process import ServerProcess  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--mb", type=int, default=150)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vpngw-bench-"))
    server = ServerProcess(f"sqlite:///{workdir / 'vpngw.db'}", workdir)
    server.start()
    try:
        assert server.process is not None
        sampler = RssSampler(server.process.pid)
        baseline = sampler.peak
        sampler.start()
        outcomes: list[Outcome] = []
        threads = [
            threading.Thread(target=lambda: outcomes.append(stream_chunked(server.port, "/", args.mb << 20)))
            for _ in range(args.streams)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sampler.done.set()
        sampler.join()
    finally:
        server.stop()
    print(f"{args.streams} concurrent chunked POSTs of {args.mb} MB each")
    print(f"server RSS: baseline {baseline / 2**20:.0f} MiB, peak {sampler.peak / 2**20:.0f} MiB")
    for outcome in outcomes:
        print(
            f"  sent {outcome.sent / 2**20:.1f} MiB, then {outcome.status_line.decode() or outcome.ended_by}"
        )


if __name__ == "__main__":
    main()
