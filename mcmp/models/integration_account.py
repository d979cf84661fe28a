"""A client's connection to one platform (frontend contract, collection ``integrationaccounts``: docs/frontend-contract.md).

``accessToken``/``refreshToken`` are stored encrypted (Fernet) by the worker; a frontend may
write plaintext, which the worker encrypts on first touch (see mcmp.worker.accounts.tokens and docs/tokens.md).
``platform`` is an open set: the seed's five plus any registered third-party connector.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, TypedDict

from bson import ObjectId
from mongoengine import DateTimeField, DictField, StringField
from pymongo.collection import Collection

from mcmp.models.base import TimestampedDocument
from mcmp.models.enums import AccountStatus


class AccountField:
    """Field names of a stored integration account (``integrationaccounts``)."""

    ID: Final = "_id"
    CLIENT_ID: Final = "clientId"
    PLATFORM: Final = "platform"
    ACCOUNT_NAME: Final = "accountName"
    EXTERNAL_ACCOUNT_ID: Final = "externalAccountId"
    ACCESS_TOKEN: Final = "accessToken"  # sealed (mcmp.worker.accounts.crypto)
    REFRESH_TOKEN: Final = "refreshToken"  # sealed
    EXPIRES_AT: Final = "expiresAt"
    STATUS: Final = "status"
    METADATA: Final = "metadata"
    AUTH_ERROR: Final = "metadata.authError"
    AUTH_ERROR_AT: Final = "metadata.authErrorAt"
    REFRESH_ERROR: Final = "metadata.refreshError"
    REFRESH_ERROR_AT: Final = "metadata.refreshErrorAt"
    TOKEN_REFRESHED_AT: Final = "metadata.tokenRefreshedAt"
    UPDATED_AT: Final = "updatedAt"
    CREATED_AT: Final = "createdAt"


# The key of ``metadata`` holding why the account needs reconnecting (``AccountField.AUTH_ERROR``).
AUTH_ERROR_KEY: Final = "authError"


class AccountDoc(TypedDict, total=False):
    """An integration account as MongoDB holds it (tokens sealed, or plaintext from a frontend)."""

    _id: ObjectId
    clientId: str
    platform: str
    accountName: str | None
    externalAccountId: str | None
    accessToken: str | None
    refreshToken: str | None
    expiresAt: datetime | None
    status: str
    metadata: dict[str, object]  # the platform's ids and settings, and the worker's auth errors
    createdAt: datetime
    updatedAt: datetime


def integration_accounts() -> Collection[AccountDoc]:
    """The ``integrationaccounts`` collection, typed (read anywhere; written only by mcmp.worker.accounts)."""
    collection: Collection[AccountDoc] = IntegrationAccount._get_collection()
    return collection


class IntegrationAccount(TimestampedDocument):
    meta = {
        "collection": "integrationaccounts",
        "strict": False,
        "indexes": ["client_id", ("client_id", "platform"), "updated_at"],  # updated_at: readiness's scan
    }

    client_id = StringField(db_field="clientId", required=True)
    platform = StringField(required=True)
    account_name = StringField(db_field="accountName")
    external_account_id = StringField(db_field="externalAccountId")
    access_token = StringField(db_field="accessToken")
    refresh_token = StringField(db_field="refreshToken")
    expires_at = DateTimeField(db_field="expiresAt")
    status = StringField(choices=[s.value for s in AccountStatus], default=AccountStatus.CONNECTED.value)
    metadata = DictField(default=dict)

    def __repr__(self) -> str:  # never show tokens, even in debugging output
        return f"<IntegrationAccount {self.pk} {self.platform} client={self.client_id} status={self.status}>"
