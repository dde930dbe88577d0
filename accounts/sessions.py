"""The session engine (SESSION_ENGINE = "accounts.sessions") and the one way
to end a user's other sessions.

Sessions live in the database, as Django's own `db` engine keeps them, in
accounts.UserSession: the same columns plus the user's id. Ending a user's
sessions must not read and decode every session on the platform, nor rely on
an index kept beside the sessions that a cycled key or an expired row would
leave wrong; the id on the row itself is rewritten with every save."""

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.http import HttpRequest

from .models import User, UserSession


def well_formed(key: str | None) -> bool:
    """A key as Django makes them (lowercase letters and digits): anything
    else in a cookie is no session, and never reaches a query (a NUL in it
    made PostgreSQL raise, a 500 on every page)."""
    return bool(key) and len(key) >= 8 and key.isascii() and key.isalnum()


class SessionStore(DBStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return well_formed(key)

    @classmethod
    def get_model_class(cls) -> type[UserSession]:
        return UserSession

    def create_model_instance(self, data: dict) -> UserSession:
        session = super().create_model_instance(data)
        try:
            session.user_id = int(data.get(SESSION_KEY))
        except (TypeError, ValueError):
            session.user_id = None
        return session


def end_other_sessions(request: HttpRequest) -> int:
    """Log the user out everywhere but in this request's session."""
    return end_sessions(user=request.user, keep=request.session.session_key)


def end_sessions(*, user: User, keep: str | None = None) -> int:
    """Delete the user's sessions, all or all but `keep`; returns how many."""
    sessions = UserSession.objects.filter(user_id=user.pk)
    if keep:
        sessions = sessions.exclude(session_key=keep)
    return sessions.delete()[0]
