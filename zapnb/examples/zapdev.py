"""The ZapDev app's database as a zapnb schema: 14 tables, 33 indexes.

ZapDev's guide says "15 tables" and its deploy output "42 indexes", but the tables and indexes it lists
are 14 and 33; this module defines exactly what the listing describes:

========================  ======  =======
table                     fields  indexes
========================  ======  =======
projects                  6       2
messages                  7       2
fragments                 8       1
usage                     4       2
rateLimits                5       2
subscriptions             16      4
polarCustomers            4       2
imports                   12      3
oauthConnections          9       2
webhookEvents             8       4
pendingSubscriptions      8       3
attachments               10      1
fragmentDrafts            5       1
agentRuns                 13      4
========================  ======  =======

Enums are unions of string literals (the values are also exported as tuples such as :data:`FRAMEWORKS`),
"(id)" fields are ``v.id(...)`` of the table they refer to, "any" fields are ``v.any()`` and optional fields
``v.optional(...)``. An index named ``by_a_b`` is over ``["a", "b"]``.

Examples
--------
>>> from zapnb.examples.zapdev import schema
>>> len(schema.tables), schema.index_count()
(14, 33)
>>> schema.validate_document("projects", {"name": "My Project", "userId": "user_123", "framework": "React"})
Traceback (most recent call last):
...
zapnb.errors.SchemaValidationError: Failed to insert or update a document in table "projects" because it \
does not match the schema: Value does not match validator.
Path: .framework
Value: "React"
Validator: v.union(v.literal("NEXTJS"), v.literal("ANGULAR"), v.literal("REACT"), v.literal("VUE"), \
v.literal("SVELTE"))
"""

from __future__ import annotations

from typing import Final

from zapnb.schema import define_schema, define_table
from zapnb.validators import UnionValidator, v

__all__ = [
    "AGENT_RUN_SOURCES",
    "AGENT_RUN_STATUSES",
    "ATTACHMENT_TYPES",
    "FRAMEWORKS",
    "IMPORT_SOURCES",
    "IMPORT_STATUSES",
    "MESSAGE_ROLES",
    "MESSAGE_STATUSES",
    "MESSAGE_TYPES",
    "OAUTH_PROVIDERS",
    "PENDING_SUBSCRIPTION_STATUSES",
    "PLAN_TYPES",
    "SUBSCRIPTION_INTERVALS",
    "SUBSCRIPTION_STATUSES",
    "WEBHOOK_EVENT_STATUSES",
    "enum",
    "schema",
]

FRAMEWORKS: Final = ("NEXTJS", "ANGULAR", "REACT", "VUE", "SVELTE")
MESSAGE_ROLES: Final = ("USER", "ASSISTANT")
MESSAGE_TYPES: Final = ("RESULT", "ERROR", "STREAMING")
MESSAGE_STATUSES: Final = ("PENDING", "STREAMING", "COMPLETE")
PLAN_TYPES: Final = ("free", "pro", "unlimited")
SUBSCRIPTION_STATUSES: Final = ("active", "past_due", "canceled", "unpaid", "trialing")
SUBSCRIPTION_INTERVALS: Final = ("monthly", "yearly")
IMPORT_SOURCES: Final = ("FIGMA", "GITHUB")
IMPORT_STATUSES: Final = ("PENDING", "PROCESSING", "COMPLETE", "FAILED")
OAUTH_PROVIDERS: Final = ("figma", "github")
WEBHOOK_EVENT_STATUSES: Final = ("received", "processed", "failed", "retrying")
PENDING_SUBSCRIPTION_STATUSES: Final = ("pending", "resolved", "failed")
ATTACHMENT_TYPES: Final = ("IMAGE", "FIGMA_FILE", "GITHUB_REPO")
AGENT_RUN_STATUSES: Final = ("PENDING", "RUNNING", "COMPLETED", "FAILED")
AGENT_RUN_SOURCES: Final = ("WEBCONTAINER", "INNGEST")


def enum(values: tuple[str, ...]) -> UnionValidator:
    """The validator of one of ``values``: a union of their literals, in order.

    Examples
    --------
    >>> enum(MESSAGE_ROLES)
    v.union(v.literal("USER"), v.literal("ASSISTANT"))
    """
    return v.union(*(v.literal(value) for value in values))


_framework = enum(FRAMEWORKS)
_optional_number = v.optional(v.number())
_optional_string = v.optional(v.string())
_optional_any = v.optional(v.any())

schema = define_schema(
    {
        "projects": define_table(
            {
                "name": v.string(),
                "userId": v.string(),
                "framework": _framework,
                "modelPreference": _optional_string,
                "createdAt": _optional_number,
                "updatedAt": _optional_number,
            }
        )
        .index("by_userId", ["userId"])
        .index("by_userId_createdAt", ["userId", "createdAt"]),
        "messages": define_table(
            {
                "content": v.string(),
                "role": enum(MESSAGE_ROLES),
                "type": enum(MESSAGE_TYPES),
                "status": enum(MESSAGE_STATUSES),
                "projectId": v.id("projects"),
                "createdAt": _optional_number,
                "updatedAt": _optional_number,
            }
        )
        .index("by_projectId", ["projectId"])
        .index("by_projectId_createdAt", ["projectId", "createdAt"]),
        "fragments": define_table(
            {
                "messageId": v.id("messages"),
                "sandboxUrl": v.string(),
                "title": v.string(),
                "files": v.any(),
                "metadata": _optional_any,
                "framework": _framework,
                "createdAt": _optional_number,
                "updatedAt": _optional_number,
            }
        ).index("by_messageId", ["messageId"]),
        "usage": define_table(
            {
                "userId": v.string(),
                "points": v.number(),
                "expire": _optional_number,
                "planType": v.optional(enum(PLAN_TYPES)),
            }
        )
        .index("by_userId", ["userId"])
        .index("by_expire", ["expire"]),
        "rateLimits": define_table(
            {
                "key": v.string(),
                "count": v.number(),
                "windowStart": v.number(),
                "limit": v.number(),
                "windowMs": v.number(),
            }
        )
        .index("by_key", ["key"])
        .index("by_windowStart", ["windowStart"]),
        "subscriptions": define_table(
            {
                "userId": v.string(),
                "polarSubscriptionId": v.string(),
                "customerId": v.string(),
                "productId": v.string(),
                "priceId": v.string(),
                "status": enum(SUBSCRIPTION_STATUSES),
                "interval": enum(SUBSCRIPTION_INTERVALS),
                "currentPeriodStart": v.number(),
                "currentPeriodEnd": v.number(),
                "cancelAtPeriodEnd": v.boolean(),
                "canceledAt": _optional_number,
                "trialStart": _optional_number,
                "trialEnd": _optional_number,
                "metadata": _optional_any,
                "createdAt": v.number(),
                "updatedAt": v.number(),
            }
        )
        .index("by_userId", ["userId"])
        .index("by_polarSubscriptionId", ["polarSubscriptionId"])
        .index("by_customerId", ["customerId"])
        .index("by_status", ["status"]),
        "polarCustomers": define_table(
            {
                "userId": v.string(),
                "polarCustomerId": v.string(),
                "createdAt": v.number(),
                "updatedAt": v.number(),
            }
        )
        .index("by_userId", ["userId"])
        .index("by_polarCustomerId", ["polarCustomerId"]),
        "imports": define_table(
            {
                "userId": v.string(),
                "projectId": v.id("projects"),
                "messageId": v.optional(v.id("messages")),
                "source": enum(IMPORT_SOURCES),
                "sourceId": v.string(),
                "sourceName": v.string(),
                "sourceUrl": v.string(),
                "status": enum(IMPORT_STATUSES),
                "metadata": _optional_any,
                "error": _optional_string,
                "createdAt": v.number(),
                "updatedAt": v.number(),
            }
        )
        .index("by_userId", ["userId"])
        .index("by_projectId", ["projectId"])
        .index("by_status", ["status"]),
        "oauthConnections": define_table(
            {
                "userId": v.string(),
                "provider": enum(OAUTH_PROVIDERS),
                "accessToken": v.string(),
                "refreshToken": _optional_string,
                "expiresAt": _optional_number,
                "scope": v.string(),
                "metadata": _optional_any,
                "createdAt": v.number(),
                "updatedAt": v.number(),
            }
        )
        .index("by_userId", ["userId"])
        .index("by_userId_provider", ["userId", "provider"]),
        "webhookEvents": define_table(
            {
                "eventId": v.string(),
                "eventType": v.string(),
                "status": enum(WEBHOOK_EVENT_STATUSES),
                "payload": v.any(),
                "error": _optional_string,
                "processedAt": _optional_number,
                "retryCount": v.number(),
                "createdAt": v.number(),
            }
        )
        .index("by_eventId", ["eventId"])
        .index("by_status", ["status"])
        .index("by_eventType", ["eventType"])
        .index("by_createdAt", ["createdAt"]),
        "pendingSubscriptions": define_table(
            {
                "polarSubscriptionId": v.string(),
                "customerId": v.string(),
                "eventData": v.any(),
                "status": enum(PENDING_SUBSCRIPTION_STATUSES),
                "resolvedUserId": _optional_string,
                "error": _optional_string,
                "createdAt": v.number(),
                "resolvedAt": _optional_number,
            }
        )
        .index("by_polarSubscriptionId", ["polarSubscriptionId"])
        .index("by_customerId", ["customerId"])
        .index("by_status", ["status"]),
        "attachments": define_table(
            {
                "type": enum(ATTACHMENT_TYPES),
                "url": v.string(),
                "width": _optional_number,
                "height": _optional_number,
                "size": v.number(),
                "messageId": v.id("messages"),
                "importId": v.optional(v.id("imports")),
                "sourceMetadata": _optional_any,
                "createdAt": _optional_number,
                "updatedAt": _optional_number,
            }
        ).index("by_messageId", ["messageId"]),
        "fragmentDrafts": define_table(
            {
                "projectId": v.id("projects"),
                "files": v.any(),
                "framework": _framework,
                "createdAt": _optional_number,
                "updatedAt": _optional_number,
            }
        ).index("by_projectId", ["projectId"]),
        "agentRuns": define_table(
            {
                "projectId": v.id("projects"),
                "value": v.string(),
                "model": _optional_string,
                "framework": _optional_string,
                "status": enum(AGENT_RUN_STATUSES),
                "runSource": enum(AGENT_RUN_SOURCES),
                "claimedBy": _optional_string,
                "messageId": v.optional(v.id("messages")),
                "fragmentId": v.optional(v.id("fragments")),
                "error": _optional_string,
                "createdAt": v.number(),
                "updatedAt": v.number(),
                "completedAt": _optional_number,
            }
        )
        .index("by_projectId", ["projectId"])
        .index("by_projectId_status", ["projectId", "status"])
        .index("by_status", ["status"])
        .index("by_projectId_createdAt", ["projectId", "createdAt"]),
    }
)
"""The ZapDev schema: 14 tables, 33 indexes (see the module docstring)."""
