"""SQLAlchemy models, one module per aggregate. Importing this registers them all."""

from app.models.api import ApiKey, WebhookDelivery
from app.models.audit import AuditEntry
from app.models.base import Base, Encrypted, UTCDateTime, utcnow
from app.models.credentials import ComponentCredential, HealthAlert, JobRun, VerifyTicket
from app.models.grant_sets import GrantSet
from app.models.grants import (
    AttentionItem,
    AuthorizationSession,
    Authorizer,
    AuthorizerToken,
    Grant,
    GrantChange,
    GrantStatus,
    PreAuthCode,
    SessionStatus,
)
from app.models.inbox import DailyCounter, InboxEvent
from app.models.mail import OutgoingMail
from app.models.merchant import Merchant
from app.models.mfa import RecoveryCode, TotpCredential
from app.models.notifications import AlertNotification
from app.models.password_reset import PasswordReset, PasswordResetRequest
from app.models.platform import Platform
from app.models.provider import ProviderProfile, StaffNote
from app.models.relay import RelayDelivery, RelayMessage, RelayRoute
from app.models.sessions import UserSession
from app.models.user import Invitation, Role, StaffRole, User

__all__ = [
    "AlertNotification",
    "ApiKey",
    "AttentionItem",
    "AuditEntry",
    "AuthorizationSession",
    "Authorizer",
    "AuthorizerToken",
    "Base",
    "ComponentCredential",
    "DailyCounter",
    "Encrypted",
    "Grant",
    "GrantChange",
    "GrantSet",
    "GrantStatus",
    "HealthAlert",
    "InboxEvent",
    "Invitation",
    "JobRun",
    "Merchant",
    "OutgoingMail",
    "PasswordReset",
    "PasswordResetRequest",
    "Platform",
    "PreAuthCode",
    "RecoveryCode",
    "RelayDelivery",
    "RelayMessage",
    "RelayRoute",
    "ProviderProfile",
    "Role",
    "SessionStatus",
    "StaffNote",
    "StaffRole",
    "TotpCredential",
    "User",
    "UserSession",
    "UTCDateTime",
    "utcnow",
    "VerifyTicket",
    "WebhookDelivery",
]
