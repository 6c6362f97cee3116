"""Creating users and their accounts (used by the CLI, the demo and tests)."""
from __future__ import annotations

from sqlalchemy import func, select

from .db import db
from .models import Account, Role, User
from .money import check_currency


class UserExists(ValueError):
    """A user with that e-mail already exists."""


def find_user(email: str) -> User | None:
    """The user with this e-mail (case-insensitive), or None."""
    return db.session.execute(select(User).where(func.lower(User.email) == email.strip().lower())).scalar_one_or_none()


def create_admin(email: str, password: str, language: str | None = None) -> User:
    """Create an administrator; :class:`UserExists` if the e-mail is taken."""
    if find_user(email):
        raise UserExists(email)
    user = User(email=email.strip().lower(), role=Role.ADMIN.value, language=language)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def create_client(email: str, password: str, currency: str = "RUB", name: str | None = None,
                  language: str | None = None) -> User:
    """Create a client user with its own account in ``currency``; :class:`UserExists` if taken."""
    if find_user(email):
        raise UserExists(email)
    account = Account(name=name or email.strip().lower(), currency=check_currency(currency))
    user = User(email=email.strip().lower(), role=Role.CLIENT.value, account=account, language=language)
    user.set_password(password)
    db.session.add_all([account, user])
    db.session.commit()
    return user
