"""Extensions, created unbound and attached in `create_app`."""

from __future__ import annotations

from flask_babel import lazy_gettext
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = lazy_gettext("Please sign in to continue.")
login_manager.session_protection = "strong"
