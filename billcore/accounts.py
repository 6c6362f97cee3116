"""Users and their accounts: creating them, the password policy, new passwords, deactivation and
ending a user's sessions (used by the CLI, the admin pages, the demo and tests)."""
from __future__ import annotations

from functools import lru_cache

from flask_babel import gettext as _
from sqlalchemy import func, select, update

from .db import db
from .models import Account, Role, User
from .money import check_currency


class UserExists(ValueError):
    """A user with that e-mail already exists."""


class WeakPassword(ValueError):
    """A password the policy refuses; the message (translated) says why."""


MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200  # the login form's limit


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    # zxcvbn's list of the 30,000 most common passwords from leaked password sets
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password(password: str, email: str) -> None:
    """Refuse a password with :class:`WeakPassword`: shorter than ``MIN_PASSWORD_LENGTH`` characters,
    longer than ``MAX_PASSWORD_LENGTH``, the e-mail (or its name part), or one of the common passwords."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(_("The password must be at least %(count)s characters long.", count=MIN_PASSWORD_LENGTH))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(_("The password must be at most %(count)s characters long.", count=MAX_PASSWORD_LENGTH))
    folded = password.strip().lower()
    address = email.strip().lower()
    if folded in (address, address.partition("@")[0]) or (len(folded) >= 6 and folded in address):
        raise WeakPassword(_("The password must not be the e-mail address."))
    if folded in _common_passwords():
        raise WeakPassword(_("This password is one of the most common ones. Please choose another."))


def end_sessions(user: User) -> None:
    """End every session of ``user`` (every browser, every copied cookie), committing at once."""
    db.session.execute(update(User).where(User.id == user.id)
                       .values(session_version=User.session_version + 1))
    db.session.commit()
    db.session.refresh(user)


def change_password(user: User, password: str) -> None:
    """Give ``user`` a new password (checked by the policy), which ends every session of the user."""
    check_password(password, user.email)
    user.set_password(password)
    db.session.commit()


def set_active(user: User, active: bool) -> None:
    """Activate or deactivate ``user``; deactivating ends every session of the user at once."""
    user.active = active
    if not active:
        user.session_version = (user.session_version or 0) + 1
    db.session.commit()


def find_user(email: str) -> User | None:
    """The user with this e-mail (case-insensitive), or None."""
    return db.session.execute(select(User).where(func.lower(User.email) == email.strip().lower())).scalar_one_or_none()


def create_admin(email: str, password: str, language: str | None = None) -> User:
    """Create an administrator; :class:`UserExists` if the e-mail is taken, :class:`WeakPassword` if the
    password policy refuses the password."""
    if find_user(email):
        raise UserExists(email)
    check_password(password, email)
    user = User(email=email.strip().lower(), role=Role.ADMIN.value, language=language)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def create_client(email: str, password: str, currency: str = "RUB", name: str | None = None,
                  language: str | None = None) -> User:
    """Create a client user with its own account in ``currency``; :class:`UserExists` if taken,
    :class:`WeakPassword` if the password policy refuses the password."""
    if find_user(email):
        raise UserExists(email)
    check_password(password, email)
    account = Account(name=name or email.strip().lower(), currency=check_currency(currency))
    user = User(email=email.strip().lower(), role=Role.CLIENT.value, account=account, language=language)
    user.set_password(password)
    db.session.add_all([account, user])
    db.session.commit()
    return user
