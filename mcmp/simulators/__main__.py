"""``python -m simulators PLATFORM [--port N] [--latency-ms MS]``: serve one simulator."""

from __future__ import annotations

import argparse

from mcmp.simulators import serve_forever, simulator_class, simulator_platforms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("platform", choices=simulator_platforms())
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    serve_forever(simulator_class(args.platform)(latency_ms=args.latency_ms), args.host, args.port)


if __name__ == "__main__":
    main()
