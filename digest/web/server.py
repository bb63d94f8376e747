"""``digest serve``: resolve the signing key, then run the app under uvicorn.

The key signs confirm and CSRF tokens, so it must survive restarts and stay
secret.  It comes from the environment variable named by ``[web] secret_env``,
and must be at least 32 bytes and not the placeholder of
``deploy/secrets.env.example`` (``security.check_signing_key``): the server
refuses to start otherwise.  Without it the server refuses to listen on a public
address; bound to loopback (a laptop, or behind a local reverse proxy) it uses a
key generated once per database and kept in it, and says so.
"""

import contextlib
import ipaddress
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from digest.config import Config
from digest.errors import DigestError, UsageError
from digest.store import Store
from digest.web.app import create_app
from digest.web.security import KEY_RECIPE, check_signing_key

log = logging.getLogger(__name__)
SECRET_NAME = "web"
STOP_SECONDS = 10.0


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1`` (brackets allowed)."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_secret(config: Config, store: Store, host: str) -> str:
    """The signing key: from the environment, else (loopback only) one kept in the database.

    A key from the environment that is short or the placeholder is a ConfigError.
    """
    found = config.web.secret()
    env = config.web.secret_env
    if found:
        return check_signing_key(found, env)
    if not is_loopback(host):
        raise UsageError(
            f"${env} is not set: the web front needs a signing key to listen on {host}",
            f"export {env}=$({KEY_RECIPE}) and keep it across restarts, or listen on 127.0.0.1",
        )
    value, created = store.app_secret(SECRET_NAME, lambda: secrets.token_urlsafe(32))
    fresh = " (generated now)" if created else ""
    log.warning("no $%s: using a key generated for this database%s", env, fresh)
    return value


def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve the web front until interrupted; raises UsageError when the key is missing."""
    server = _server(config, host or config.web.host, config.web.port if port is None else port)
    with _exit_cleanly_on(signal.SIGTERM, signal.SIGINT):
        server.run()


@contextlib.contextmanager
def _exit_cleanly_on(*signals: signal.Signals) -> Iterator[None]:
    """Exit status 0 after a stop signal, not death by that signal.

    uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again
    for the handler that was there before it; that handler is this one, which
    exits normally.  Before uvicorn takes over (while starting) it stops at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _exit) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit(signum: int, frame: FrameType | None) -> None:
    log.info("%s: stopped", signal.Signals(signum).name)
    raise SystemExit(0)


def start_in_thread(config: Config) -> Callable[[], None]:
    """Serve in a background thread (``digest run`` with ``[web] enabled``); returns stop().

    Returns once the server listens; raises DigestError when it could not start.
    """
    server = _server(config, config.web.host, config.web.port)

    def run() -> None:
        with contextlib.suppress(SystemExit):  # a failed startup: uvicorn has logged why
            server.run()

    thread = threading.Thread(target=run, name="digest-web", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            where = f"{config.web.host}:{config.web.port}"
            raise DigestError(f"the web front could not start on {where}", "see the log above")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=STOP_SECONDS)

    return stop


def _server(config: Config, host: str, port: int) -> uvicorn.Server:
    store = Store(config.storage.database, create=False)
    try:
        secret = resolve_secret(config, store, host)
        identity = store.adopt_identity()
    finally:
        store.close()
    app = create_app(config, secret=secret, identity=identity)
    log.info("web front for %s on http://%s:%d", config.web.base_url, host, port)
    # proxy_headers: behind a reverse proxy on loopback (uvicorn's default trusted address),
    # X-Forwarded-For gives the client's address, which the subscribe rate limit is keyed on.
    level = logging.getLogger().getEffectiveLevel()
    settings = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=logging.getLevelName(max(level, logging.INFO)).lower(),
        access_log=level <= logging.DEBUG,  # a line per request only with -v
        proxy_headers=True,
        server_header=False,
    )
    return uvicorn.Server(settings)
