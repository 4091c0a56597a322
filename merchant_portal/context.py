"""Request-scoped access to the runtime: the database session, Redis, settings."""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy.orm import Session

from pos.coordination import Coordinator
from pos.runtime import Runtime
from pos.settings import Settings


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["cryptocity"]
    return rt


def settings() -> Settings:
    return runtime().settings


def coordinator() -> Coordinator:
    return runtime().coordinator


def db() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = runtime().session_factory()
    session: Session = g.db
    return session


def client_ip() -> str:
    return request.remote_addr or "unknown"
