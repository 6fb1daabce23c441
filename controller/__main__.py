"""python -m controller: run the controller daemon (see docs/protocol.md, docs/config.md)."""

from __future__ import annotations

import os

# Before torch loads libgomp, which reads it once. By default an idle OpenMP worker spins for
# about 300,000 rounds (milliseconds here) after every parallel region; paced at the control
# rate, that spinning holds a core while ZeroMQ's I/O thread waits to send the reply. 10,000
# rounds (tens of microseconds) still bridge the regions within one plan. Measured on the
# 2-core VM, 50 ms pacing, receipt to reply p99: 8.6 -> 1.7 ms (docs/config.md, "Threads").
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from controller.config import ConfigError, load_config  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vehicle-mpc-daemon", description="Real-time MPC controller daemon")
    p.add_argument("--config", help="YAML config (default: configs/daemon.yaml)")
    p.add_argument("--track", help="built-in track name or TUM CSV path")
    p.add_argument("--planner", choices=("mppi", "ilqr", "mppi+ilqr"), help="planner kind (its defaults)")
    p.add_argument("--bind", help="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--log-dir", help="transition log directory")
    p.add_argument("--no-log", action="store_true", help="do not write a transition log")
    p.add_argument("--model", help="model bundle directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--log-json", action="store_true", help="log lines as JSON objects, one per line")
    p.add_argument("--metrics", metavar="[HOST:]PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST default 127.0.0.1)")
    p.add_argument("--foxglove", metavar="[HOST:]PORT",
                   help="live view over the Foxglove WebSocket protocol (HOST default 127.0.0.1)")
    return p.parse_args(argv)


def foxglove_parts(config, runtime, track_record, live_address):  # noqa: ANN001, ANN201
    """The Foxglove scene encoder (log.foxglove, or a live view) and the live view, if any."""
    if live_address and not config.log.enabled:
        raise ValueError("--foxglove needs the transition log (the live view runs on its writer thread)")
    if not (config.log.enabled and (config.log.foxglove or live_address)):
        return None, None
    try:
        from controller.foxglove_scene import SceneEncoder
    except ImportError:
        if live_address:
            raise ValueError("--foxglove needs foxglove-sdk: pip install -e '.[foxglove]'") from None
        logging.getLogger("controller").info("no Foxglove topics in the log: foxglove-sdk is not installed")
        return None, None
    params = runtime.model.params  # every planner config has dt (the combined one: its MPPI's)
    scene = SceneEncoder(params.wheelbase, params.ref_to_rear, params.width, config.planner.dt)
    live = None
    if live_address:
        from controller.foxglove_live import LiveView

        live = LiveView(live_address, track_record)
        host = live_address.rpartition(":")[0] or "127.0.0.1"
        logging.getLogger("controller").info("Foxglove live view at ws://%s:%d", host, live.port)
    return scene, live


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if args.log_json:
        from controller.jsonlog import use_json_lines

        use_json_lines(level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.set)
    if args.planner:
        current = load_config(args.config).planner.kind if not any(s.startswith("planner") for s in overrides) else None
        if current != args.planner:
            overrides.insert(0, f"planner={{kind: {args.planner}}}")
    for flag, key in ((args.track, "track"), (args.bind, "bind"), (args.log_dir, "log.dir"), (args.model, "model.bundle")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.no_log:
        overrides.append("log.enabled=false")
    try:
        config = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2

    from controller.daemon import Daemon
    from controller.runtime import build_runtime
    from controller.security import InsecureBindError, check_bind_allowed
    from controller.track.identity import describe as describe_track
    from controller.translog import TransitionLog

    try:
        check_bind_allowed(config.bind, config.security)  # before the slow warm-up
        logging.getLogger("controller").info(
            "loading track %s (a real track's projection grid takes seconds) and building planner %s "
            "(the first run compiles the native kernel, about 2 s, cached)", config.track, config.planner.kind
        )
        runtime = build_runtime(config)
        track_record = describe_track(runtime.track, config.track)
        scene, live = foxglove_parts(config, runtime, track_record, args.foxglove)
        transition_log = (
            TransitionLog(
                config.log.path,
                rotate_bytes=int(config.log.rotate_mb * (1 << 20)),
                rotate_s=config.log.rotate_s,
                flush_s=config.log.flush_s,
                track=track_record,
                scene=scene,
                live=live,
            )
            if config.log.enabled
            else None
        )
        daemon = Daemon(runtime, transition_log)
        if args.metrics:
            from controller.metrics import serve_metrics

            logging.getLogger("controller").info("metrics at %s", serve_metrics(daemon, args.metrics))
    except (InsecureBindError, FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    daemon.install_signal_handlers()
    print(f"ready: {daemon.endpoint}", flush=True)
    from controller.systemd import notify

    notify("READY=1")
    daemon.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
