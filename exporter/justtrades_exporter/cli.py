"""`justtrades-exporter [serve] ...` serves the metrics; `justtrades-exporter check ...` runs the threshold check."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from . import __version__, check, globex_holidays, market_hours, settings
from .polling import PlatformClient
from .scraper import PlatformScraper
from .server import DEFAULT_PORT, Exporter, ExporterSettings, serve

logger = logging.getLogger(__name__)

COMMANDS = ("serve", "check")
SERVE_USAGE_EXIT = 2
CHECK_USAGE_EXIT = int(check.State.UNKNOWN)  # Nagios reads any other code as a state of the checked service


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with a chosen code."""

    def __init__(self, *args, usage_exit_code: int = SERVE_USAGE_EXIT, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.usage_exit_code = usage_exit_code

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit_code, f"{self.prog}: error: {message}\n")


class _RejectApiKeyOption(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(
            "--api-key is not accepted because any local user can read a command line; "
            f"set {settings.API_KEY_ENV} or pass --api-key-file PATH"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="justtrades-exporter",
        description="Prometheus exporter for Just Trades platforms that expose only the JSON monitoring endpoints.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    serve_parser = commands.add_parser(
        "serve", help="serve /metrics (the default command)", usage_exit_code=SERVE_USAGE_EXIT
    )
    _add_platform_options(serve_parser)
    serve_parser.add_argument("--listen-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve_parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    serve_parser.add_argument(
        "--cache-max-age",
        default="0",
        help="reuse an endpoint's response for up to this many seconds (default 0: poll on every scrape); "
        "/health is still polled on every scrape",
    )

    check_parser = commands.add_parser(
        "check", help="evaluate the alert thresholds now (Nagios plugin exit codes)", usage_exit_code=CHECK_USAGE_EXIT
    )
    _add_platform_options(check_parser)
    check_parser.add_argument("--json", action="store_true", help="print one JSON document instead of one line per row")
    # The rows already name every failed poll; warnings on stderr would repeat them.
    check_parser.set_defaults(log_level="error")
    return parser


def _add_platform_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--platform-url",
        default=os.environ.get(settings.PLATFORM_URL_ENV),
        help=f"base URL of the platform, such as http://platform:5000 (default: ${settings.PLATFORM_URL_ENV})",
    )
    parser.add_argument("--timeout", default="5", help="timeout of each HTTP request in seconds (default 5)")
    parser.add_argument(
        "--scrape-timeout",
        default="10",
        help="time limit in seconds for one scrape, response included (default 10, Prometheus' default); "
        "a shorter X-Prometheus-Scrape-Timeout-Seconds from Prometheus wins",
    )
    parser.add_argument(
        "--api-key-file",
        help=f"file holding the platform's API key (default: ${settings.API_KEY_FILE_ENV}; or set ${settings.API_KEY_ENV})",
    )
    parser.add_argument("--api-key", nargs="?", action=_RejectApiKeyOption, help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="log level (default info)"
    )


def with_default_command(argv: list[str]) -> list[str]:
    """Return the arguments with `serve` put first when they name no command."""
    if argv and argv[0] in COMMANDS + ("-h", "--help", "--version"):
        return list(argv)
    return ["serve", *argv]


def main(argv: list[str] | None = None) -> int:
    argv = with_default_command(list(sys.argv[1:] if argv is None else argv))

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )

    usage_exit = CHECK_USAGE_EXIT if args.command == "check" else SERVE_USAGE_EXIT
    try:
        exporter_settings = _exporter_settings(args)
        # An invalid JT_MARKET_HOLIDAYS_FILE is a usage error at start, not a failure in every scrape.
        market_hours.load_holiday_overrides()
    except (settings.SettingsError, globex_holidays.HolidayFileError) as error:
        print(f"justtrades-exporter: error: {error}", file=sys.stderr)
        return usage_exit

    if args.command == "check":
        return run_check(exporter_settings, as_json=args.json)
    return run_serve(exporter_settings, args.listen_address, args.port)


def _exporter_settings(args: argparse.Namespace) -> ExporterSettings:
    cache_max_age = getattr(args, "cache_max_age", "0")
    return ExporterSettings(
        platform_url=settings.platform_url(args.platform_url),
        api_key=settings.api_key(args.api_key_file),
        timeout_seconds=settings.positive_seconds("--timeout", args.timeout),
        scrape_timeout_seconds=settings.positive_seconds("--scrape-timeout", args.scrape_timeout),
        cache_max_age_seconds=settings.non_negative_seconds("--cache-max-age", cache_max_age),
    )


def run_serve(exporter_settings: ExporterSettings, host: str, port: int) -> int:
    if not 0 <= port <= 65535:
        print(f"justtrades-exporter: error: --port {port} is outside 0-65535", file=sys.stderr)
        return SERVE_USAGE_EXIT
    if exporter_settings.api_key is None:
        logger.warning(
            "no API key set (%s); endpoints that need one will be reported as down", settings.API_KEY_ENV
        )

    try:
        serve(Exporter(exporter_settings), host, port)
    except OSError as error:
        logger.error("cannot listen on %s:%s: %s; choose another --port or --listen-address", host, port, error)
        return 1
    except KeyboardInterrupt:
        logger.info("stopped by interrupt")
    return 0


def run_check(exporter_settings: ExporterSettings, as_json: bool) -> int:
    client = PlatformClient(exporter_settings.platform_url, exporter_settings.api_key, exporter_settings.timeout_seconds)
    try:
        deadline = time.monotonic() + exporter_settings.scrape_timeout_seconds
        reading = PlatformScraper(client).read(deadline, extra_endpoints=check.CHECK_ENDPOINTS)
    finally:
        client.close()

    report = check.evaluate(reading, time.time())
    if as_json:
        print(json.dumps(report.as_dict(exporter_settings.platform_url), indent=2))
    else:
        print("\n".join(report.lines()))
    return int(report.state)


if __name__ == "__main__":
    sys.exit(main())
