"""A customer's favourite (service, country) pairs, kept at the top of the buy picker."""

from __future__ import annotations

from sqlalchemy import delete, select

from ..extensions import db
from ..models import Favourite, User
from . import catalog
from .errors import ServiceError

MAX_FAVOURITES = 50


class FavouriteError(ServiceError):
    kind = "BAD_FAVOURITE"


def for_user(user_id: int) -> list[Favourite]:
    """The user's favourites, oldest first."""
    return list(
        db.session.execute(
            select(Favourite).where(Favourite.user_id == user_id).order_by(Favourite.id)
        ).scalars()
    )


def add(user: User, service: str, country: str) -> Favourite:
    """Keep (service, country) as a favourite of `user` (adding one twice changes nothing).
    Raises FavouriteError for an unknown service or country, or past MAX_FAVOURITES.
    Commits."""
    known = catalog.service(service)
    try:
        country_id = catalog.parse_country(country)
    except catalog.UnknownCountry:
        country_id = None
    if known is None or country_id is None or catalog.country(country_id) is None:
        raise FavouriteError("No such service or country.")
    current = for_user(user.id)
    for row in current:
        if row.service == known.code and row.country_id == country_id:
            return row
    if len(current) >= MAX_FAVOURITES:
        raise FavouriteError(f"At most {MAX_FAVOURITES} favourites.")
    row = Favourite(user_id=user.id, service=known.code, country_id=country_id)
    db.session.add(row)
    db.session.commit()
    return row


def remove(user: User, service: str, country: str) -> None:
    """Forget a favourite of `user`; one that is not there changes nothing. Commits."""
    try:
        country_id = catalog.parse_country(country)
    except catalog.UnknownCountry:
        return
    db.session.execute(
        delete(Favourite).where(
            Favourite.user_id == user.id,
            Favourite.service == service,
            Favourite.country_id == country_id,
        )
    )
    db.session.commit()
