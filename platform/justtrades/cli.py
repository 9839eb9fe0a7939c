"""The `justtrades` command: serve, migrate, seed."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from sqlalchemy import make_url, select
from sqlalchemy.exc import OperationalError

from .brokers.tradovate_auth import CredentialsError
from .config import ConfigError, Settings
from .db.engine import create_database_engine, create_session_factory, lifted_timeouts, transaction
from .db.migrate import pending_revisions, upgrade
from .feeds.settings import FeedConfigError
from .markets.globex_holidays import HolidayFileError
from .seed import SeedError, apply_seed, load_seed_file

logger = logging.getLogger("justtrades.cli")


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("JT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(name)s - %(levelname)s - %(message)s",
    )

    settings = None
    try:
        settings = Settings.from_environ()
        return arguments.handler(arguments, settings)
    except (ConfigError, FeedConfigError, CredentialsError, HolidayFileError, SeedError) as error:
        # Each message names the setting or file and the value to fix, so a traceback would add only noise.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        # At start this is a database that is missing, stopped or rejecting the connection. The first line of the
        # driver's message names the cause.
        url = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = str(error.orig or error).strip().splitlines()[0]
        print(f"error: cannot open the database {url}: {reason}; start the server, create the database or fix "
              "DATABASE_URL", file=sys.stderr)
        return 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="justtrades", description="Just Trades platform core.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the platform with waitress (a production WSGI server)")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=_int_from_environ("PORT", 5000), help="TCP port (default $PORT or 5000)")
    serve.add_argument("--threads", type=int, default=_int_from_environ("JT_HTTP_THREADS", 16),
                       help="HTTP request threads (default $JT_HTTP_THREADS or 16)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(handler=_migrate)

    seed = commands.add_parser("seed", help="load accounts, recorders and traders from a YAML file (idempotent)")
    seed.add_argument("file", type=Path, help="YAML file with the keys accounts, recorders, traders")
    seed.set_defaults(handler=_seed)

    admin = commands.add_parser(
        "create-admin",
        help="create an admin user; the password comes from $JT_ADMIN_PASSWORD or a prompt, never the command line",
    )
    admin.add_argument("email", help="the admin's email address, used to log in")
    admin.set_defaults(handler=_create_admin)
    return parser


def _int_from_environ(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not a whole number; set it to a port or count such as {default}")


def _migrate(arguments, settings: Settings) -> int:
    engine = create_database_engine(settings.database_url)
    applied = pending_revisions(engine)
    upgrade(engine)
    engine.dispose()
    if applied:
        print(f"applied migrations {', '.join(applied)} to the database at {_safe_url(engine)}")
    print(f"database at {_safe_url(engine)} is up to date")
    return 0


def _seed(arguments, settings: Settings) -> int:
    engine = create_database_engine(settings.database_url)
    upgrade(engine)
    document = load_seed_file(arguments.file)
    with transaction(create_session_factory(engine)) as session, lifted_timeouts(session.connection()):
        report = apply_seed(session, document)
    engine.dispose()
    print(f"seeded {arguments.file}: {report}")
    return 0


def _create_admin(arguments, settings: Settings) -> int:
    from .accounts.users import UserError, create_user

    password = os.environ.get("JT_ADMIN_PASSWORD")
    if not password:
        try:
            password = getpass.getpass(f"password for {arguments.email}: ")
        except (EOFError, OSError):
            print("error: no terminal to read the password from; set JT_ADMIN_PASSWORD", file=sys.stderr)
            return 2
    engine = create_database_engine(settings.database_url)
    upgrade(engine)
    try:
        with transaction(create_session_factory(engine)) as session:
            create_user(session, arguments.email, password, role="admin")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"created admin {arguments.email}")
    return 0


def _serve(arguments, settings: Settings) -> int:
    from .app import create_app
    from .wsgi import create_server

    if not arguments.no_migrate:
        engine = create_database_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()

    app = create_app(settings)
    runtime = app.extensions["justtrades"]
    server = create_server(app, arguments.host, arguments.port, arguments.threads)
    _print_webhook_urls(runtime, arguments.host, server.effective_port)

    stopping = threading.Event()

    def _stop(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            logger.info("received signal %s; shutting down", signum)
            server.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info("serving on http://%s:%s", arguments.host, server.effective_port)
    try:
        server.run()
    except OSError:
        if not stopping.is_set():
            raise
    finally:
        runtime.stop()
    return 0


def _print_webhook_urls(runtime, host: str, port: int) -> None:
    from .db.models import Recorder

    with runtime.session_factory() as session:
        recorders = session.execute(select(Recorder.name, Recorder.webhook_token).order_by(Recorder.id)).all()
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"Just Trades listening on http://{shown_host}:{port}", flush=True)
    # The token is a webhook's only credential. A server reachable from other hosts usually has its output
    # collected into logs, so there only the token's end is shown, as in the access log.
    local = _is_loopback(host)
    for name, token in recorders:
        shown_token = token if local else f"...{token[-4:]}"
        print(f"  webhook for {name}: http://{shown_host}:{port}/webhook/{shown_token}", flush=True)
    if recorders and not local:
        print("  (tokens shortened on a non-loopback address: each recorder's full token is in its seed file)",
              flush=True)
    if not runtime.settings.admin_api_key:
        print("  admin endpoints: JT_ADMIN_API_KEY is not set, so only a logged-in admin gets in; set it to call "
              "them with an X-API-Key header", flush=True)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _safe_url(engine) -> str:
    return engine.url.render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
