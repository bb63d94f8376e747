"""The web front: subscribe with double opt-in, manage, unsubscribe, feeds, paper pages.

A thin shell like the CLI: handlers parse input, call the core (subscribers,
match, feeds, mailer) and render a template.  No JavaScript is needed anywhere.

    create_app(config, store_path=None, *, secret, clock=None, transport_factory=None)
    serve(config, host=None, port=None)       # what `digest serve` runs
    resolve_secret(config, store, host)       # the signing key rule, on its own
    start_in_thread(config) -> stop           # the scheduler's `[web] enabled`
"""

from digest.web.app import create_app
from digest.web.server import resolve_secret, serve, start_in_thread

__all__ = ["create_app", "resolve_secret", "serve", "start_in_thread"]
