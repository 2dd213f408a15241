"""The ZapDev example schema: every table, field, enum and index of ZapDev's database guide."""

from __future__ import annotations

import polars as pl
import pytest

from zapnb import SchemaValidationError
from zapnb.examples import zapdev
from zapnb.examples.zapdev import schema
from zapnb.ids import Id

FW = (
    'v.union(v.literal("NEXTJS"), v.literal("ANGULAR"), v.literal("REACT"), v.literal("VUE"), '
    'v.literal("SVELTE"))'
)
NUM = "v.number()"
STR = "v.string()"
OPT_NUM = "v.optional(v.number())"
OPT_STR = "v.optional(v.string())"
OPT_ANY = "v.optional(v.any())"


def lits(*values: str) -> str:
    return "v.union(" + ", ".join(f'v.literal("{value}")' for value in values) + ")"


# Typed out from ZapDev's guide, field by field.
FIELDS: dict[str, dict[str, str]] = {
    "projects": {
        "name": STR,
        "userId": STR,
        "framework": FW,
        "modelPreference": OPT_STR,
        "createdAt": OPT_NUM,
        "updatedAt": OPT_NUM,
    },
    "messages": {
        "content": STR,
        "role": lits("USER", "ASSISTANT"),
        "type": lits("RESULT", "ERROR", "STREAMING"),
        "status": lits("PENDING", "STREAMING", "COMPLETE"),
        "projectId": 'v.id("projects")',
        "createdAt": OPT_NUM,
        "updatedAt": OPT_NUM,
    },
    "fragments": {
        "messageId": 'v.id("messages")',
        "sandboxUrl": STR,
        "title": STR,
        "files": "v.any()",
        "metadata": OPT_ANY,
        "framework": FW,
        "createdAt": OPT_NUM,
        "updatedAt": OPT_NUM,
    },
    "usage": {
        "userId": STR,
        "points": NUM,
        "expire": OPT_NUM,
        "planType": f"v.optional({lits('free', 'pro', 'unlimited')})",
    },
    "rateLimits": {"key": STR, "count": NUM, "windowStart": NUM, "limit": NUM, "windowMs": NUM},
    "subscriptions": {
        "userId": STR,
        "polarSubscriptionId": STR,
        "customerId": STR,
        "productId": STR,
        "priceId": STR,
        "status": lits("active", "past_due", "canceled", "unpaid", "trialing"),
        "interval": lits("monthly", "yearly"),
        "currentPeriodStart": NUM,
        "currentPeriodEnd": NUM,
        "cancelAtPeriodEnd": "v.boolean()",
        "canceledAt": OPT_NUM,
        "trialStart": OPT_NUM,
        "trialEnd": OPT_NUM,
        "metadata": OPT_ANY,
        "createdAt": NUM,
        "updatedAt": NUM,
    },
    "polarCustomers": {"userId": STR, "polarCustomerId": STR, "createdAt": NUM, "updatedAt": NUM},
    "imports": {
        "userId": STR,
        "projectId": 'v.id("projects")',
        "messageId": 'v.optional(v.id("messages"))',
        "source": lits("FIGMA", "GITHUB"),
        "sourceId": STR,
        "sourceName": STR,
        "sourceUrl": STR,
        "status": lits("PENDING", "PROCESSING", "COMPLETE", "FAILED"),
        "metadata": OPT_ANY,
        "error": OPT_STR,
        "createdAt": NUM,
        "updatedAt": NUM,
    },
    "oauthConnections": {
        "userId": STR,
        "provider": lits("figma", "github"),
        "accessToken": STR,
        "refreshToken": OPT_STR,
        "expiresAt": OPT_NUM,
        "scope": STR,
        "metadata": OPT_ANY,
        "createdAt": NUM,
        "updatedAt": NUM,
    },
    "webhookEvents": {
        "eventId": STR,
        "eventType": STR,
        "status": lits("received", "processed", "failed", "retrying"),
        "payload": "v.any()",
        "error": OPT_STR,
        "processedAt": OPT_NUM,
        "retryCount": NUM,
        "createdAt": NUM,
    },
    "pendingSubscriptions": {
        "polarSubscriptionId": STR,
        "customerId": STR,
        "eventData": "v.any()",
        "status": lits("pending", "resolved", "failed"),
        "resolvedUserId": OPT_STR,
        "error": OPT_STR,
        "createdAt": NUM,
        "resolvedAt": OPT_NUM,
    },
    "attachments": {
        "type": lits("IMAGE", "FIGMA_FILE", "GITHUB_REPO"),
        "url": STR,
        "width": OPT_NUM,
        "height": OPT_NUM,
        "size": NUM,
        "messageId": 'v.id("messages")',
        "importId": 'v.optional(v.id("imports"))',
        "sourceMetadata": OPT_ANY,
        "createdAt": OPT_NUM,
        "updatedAt": OPT_NUM,
    },
    "fragmentDrafts": {
        "projectId": 'v.id("projects")',
        "files": "v.any()",
        "framework": FW,
        "createdAt": OPT_NUM,
        "updatedAt": OPT_NUM,
    },
    "agentRuns": {
        "projectId": 'v.id("projects")',
        "value": STR,
        "model": OPT_STR,
        "framework": OPT_STR,
        "status": lits("PENDING", "RUNNING", "COMPLETED", "FAILED"),
        "runSource": lits("WEBCONTAINER", "INNGEST"),
        "claimedBy": OPT_STR,
        "messageId": 'v.optional(v.id("messages"))',
        "fragmentId": 'v.optional(v.id("fragments"))',
        "error": OPT_STR,
        "createdAt": NUM,
        "updatedAt": NUM,
        "completedAt": OPT_NUM,
    },
}

INDEXES: dict[str, dict[str, tuple[str, ...]]] = {
    "projects": {"by_userId": ("userId",), "by_userId_createdAt": ("userId", "createdAt")},
    "messages": {"by_projectId": ("projectId",), "by_projectId_createdAt": ("projectId", "createdAt")},
    "fragments": {"by_messageId": ("messageId",)},
    "usage": {"by_userId": ("userId",), "by_expire": ("expire",)},
    "rateLimits": {"by_key": ("key",), "by_windowStart": ("windowStart",)},
    "subscriptions": {
        "by_userId": ("userId",),
        "by_polarSubscriptionId": ("polarSubscriptionId",),
        "by_customerId": ("customerId",),
        "by_status": ("status",),
    },
    "polarCustomers": {"by_userId": ("userId",), "by_polarCustomerId": ("polarCustomerId",)},
    "imports": {"by_userId": ("userId",), "by_projectId": ("projectId",), "by_status": ("status",)},
    "oauthConnections": {"by_userId": ("userId",), "by_userId_provider": ("userId", "provider")},
    "webhookEvents": {
        "by_eventId": ("eventId",),
        "by_status": ("status",),
        "by_eventType": ("eventType",),
        "by_createdAt": ("createdAt",),
    },
    "pendingSubscriptions": {
        "by_polarSubscriptionId": ("polarSubscriptionId",),
        "by_customerId": ("customerId",),
        "by_status": ("status",),
    },
    "attachments": {"by_messageId": ("messageId",)},
    "fragmentDrafts": {"by_projectId": ("projectId",)},
    "agentRuns": {
        "by_projectId": ("projectId",),
        "by_projectId_status": ("projectId", "status"),
        "by_status": ("status",),
        "by_projectId_createdAt": ("projectId", "createdAt"),
    },
}


def test_counts_are_what_the_guide_lists() -> None:
    assert len(schema.tables) == 14
    assert schema.index_count() == 33
    assert sum(len(table.indexes) for table in schema.tables.values()) == 33
    assert list(schema.tables) == list(FIELDS)
    assert schema.schema_validation
    assert "14 tables, 33 indexes" in (zapdev.__doc__ or "")


@pytest.mark.parametrize("table", list(FIELDS))
def test_fields_of_each_table(table: str) -> None:
    document = schema.tables[table].document
    fields = {name: validator.describe() for name, validator in document.fields}  # type: ignore[attr-defined]
    assert fields == FIELDS[table]
    assert list(fields) == list(FIELDS[table])


@pytest.mark.parametrize("table", list(INDEXES))
def test_indexes_of_each_table(table: str) -> None:
    definition = schema.tables[table]
    assert {index.name: index.fields for index in definition.indexes} == INDEXES[table]
    assert not any(index.staged for index in definition.indexes)
    assert definition.search_indexes == ()
    assert definition.vector_indexes == ()


@pytest.mark.parametrize("table", list(FIELDS))
def test_empty_frame_of_each_table_has_its_typed_schema(table: str) -> None:
    frame = pl.DataFrame(schema=schema.tables[table].polars_schema())
    assert frame.height == 0
    assert frame.columns == ["_id", "_creationTime", *FIELDS[table]]
    assert frame.schema["_id"] == pl.String()
    assert frame.schema["_creationTime"] == pl.Float64()
    for name, dtype in frame.schema.items():
        text = FIELDS[table].get(name, "")
        if "v.literal(" in text:
            assert isinstance(dtype, pl.Enum), name
        elif "v.any()" in text:
            assert dtype == pl.String(), name
        elif "v.number()" in text:
            assert dtype == pl.Float64(), name


def test_enum_columns_keep_declaration_order() -> None:
    dtypes = schema.tables["projects"].polars_schema()
    assert dtypes["framework"] == pl.Enum(list(zapdev.FRAMEWORKS))
    assert schema.tables["usage"].polars_schema()["planType"] == pl.Enum(["free", "pro", "unlimited"])
    assert schema.tables["subscriptions"].polars_schema()["cancelAtPeriodEnd"] == pl.Boolean()


def test_enum_constants() -> None:
    assert zapdev.FRAMEWORKS == ("NEXTJS", "ANGULAR", "REACT", "VUE", "SVELTE")
    assert zapdev.SUBSCRIPTION_STATUSES == ("active", "past_due", "canceled", "unpaid", "trialing")
    assert zapdev.enum(zapdev.FRAMEWORKS).describe() == FW


def test_the_guides_examples() -> None:
    good = {"name": "My Project", "userId": "user_123", "framework": "NEXTJS", "createdAt": 1732600000000}
    assert schema.validate_document("projects", good) == {**good, "createdAt": 1732600000000.0}
    with pytest.raises(SchemaValidationError) as info:
        schema.validate_document(
            "projects", {"name": "My Project", "userId": "user_123", "framework": "React"}
        )
    assert str(info.value) == (
        'Failed to insert or update a document in table "projects" because it does not match the schema: '
        f'Value does not match validator.\nPath: .framework\nValue: "React"\nValidator: {FW}'
    )


def test_a_message_document() -> None:
    project = Id.encode(10001, bytes(16))
    doc = {"content": "hi", "role": "USER", "type": "RESULT", "status": "COMPLETE", "projectId": str(project)}
    result = schema.validate_document("messages", doc, ids={"projects": 10001, "messages": 10002})
    assert result["projectId"].table == "projects"
    wrong = Id.encode(10002, bytes(16))
    with pytest.raises(SchemaValidationError, match="from table `messages`"):
        schema.validate_document(
            "messages", {**doc, "projectId": wrong}, ids={"projects": 10001, "messages": 10002}
        )
