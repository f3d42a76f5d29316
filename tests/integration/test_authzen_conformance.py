"""The AuthZEN 1.0 certification scenario against a real ``remit serve`` over HTTPS: every
test of its Basic, Batch, Search and Discovery levels (Core and Properties) passes, and the
README's results table is the one this run produces (``python -m tests.support.authzen_cert
--write`` regenerates it). The fixture is a test-only scheme compiled into a scratch
directory; it is never in the served catalogue."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from remit.config import ConfigError
from remit.config import load as load_config
from remit.distribution.signing import generate_keypair
from remit.model.errors import InvalidArgument
from remit.model.policy import PolicySet
from remit.server.http.directory import DirectoryError, canonical, load
from remit.server.http.signed import verify

from tests.support import authzen_cert
from tests.support.authzen_cert import FIXTURE, README, TENANT, Pdp, readme_table, run_all, table


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pdp]:
    with authzen_cert.serving(tmp_path_factory.mktemp("cert")) as served:
        yield served


def test_every_certification_test_passes_and_the_readme_table_is_this_run(pdp: Pdp) -> None:
    results = run_all(pdp)
    failed = [f"{r.case.test_id}: {r.detail}" for r in results if not r.passed]
    assert not failed, failed
    assert {r.case.test_id for r in results} >= {
        "c-2-2-1", "c-2-2-4", "c-3-2-7", "c-4-2-4", "c-4-3-4", "c-4-4-3", "c-6",
    }  # fmt: skip
    assert readme_table(README.read_text(encoding="utf-8")) == table(results), (
        "README.md's conformance table is stale: python -m tests.support.authzen_cert --write"
    )


def test_a_refusal_inside_a_tenant_names_the_field_and_never_allows(pdp: Pdp) -> None:
    reply = pdp.post(
        "evaluation",
        {
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "write"},
            "resource": {"type": "record", "id": "record-1", "properties": {"status": "archived"}},
        },
    )  # the directory holds record-1 as active: a disagreement is refused, not preferred
    assert reply.status == 400
    assert reply.headers["remit-error-field"] == "resource.properties.status"
    reply = pdp.post(
        "evaluation",
        {
            "subject": {"type": "user", "id": "mallory"},
            "action": {"name": "read"},
            "resource": {"type": "record", "id": "record-1"},
        },
    )
    assert reply.status == 400 and reply.headers["remit-error-field"] == "subject.id"
    unknown = pdp.send("GET", "/.well-known/authzen-configuration/no_such_council")
    assert unknown.status == 404


def test_the_fixture_is_not_in_the_served_catalogue(policies: PolicySet) -> None:
    assert TENANT not in policies.councils
    assert not (Path(__file__).parents[2] / "policies" / "generated" / TENANT).exists()


def test_a_directory_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "directory.yaml"
    bad.write_text(
        "tenants:\n  torbay:\n    subject_type: user\n    subjects: {a: {roles: x}}\n"
        "    resources: {r: {status: 1.5}}\n    colour: blue\n"
    )
    with pytest.raises(DirectoryError) as info:
        load(bad)
    text = str(info.value)
    for part in (
        "tenants.torbay.colour",
        "tenants.torbay.resource_type",
        "tenants.torbay.subjects.a.roles",
        "tenants.torbay.resources.r.status",
    ):
        assert part in text


def test_only_mapped_properties_are_read_and_an_unmapped_fact_is_refused_not_ignored(
    policies: PolicySet,
) -> None:
    tenant = load(FIXTURE / "directory.yaml")[TENANT]
    item: dict[str, Any] = {
        "subject": {"type": "user", "id": "alice", "properties": {"role": "editor"}},
        "action": {"name": "delete", "properties": {"soft": True, "method": "DELETE"}},
        "resource": {"type": "record", "id": "record-1", "properties": {"owner": "bob"}},
        "context": {"ip": "192.0.2.1"},
    }
    out = canonical(tenant, item, policies)
    assert out["subject"]["properties"] == {"roles": ["editor"]}  # "editor" is no mapped value
    assert out["context"] == {"soft": True}
    assert out["resource"]["properties"] == {"council": TENANT, "status": "active"}
    for change, field in (
        ({"subject": {"type": "worker", "id": "alice"}}, "subject.type"),
        (
            {"subject": {"type": "user", "id": "alice", "properties": {"roles": ["x"]}}},
            "subject.properties.roles",
        ),  # a worker's field, unmapped: it could be a post
        ({"context": {"emergency": True}}, "context.emergency"),  # a fact a deny could test
        ({"context": {"decision_time": "2026-01-01T00:00:00Z"}}, "context.decision_time"),
        (
            {"resource": {"type": "record", "id": "record-1", "properties": {"looked_after": 1}}},
            "resource.properties.looked_after",
        ),
    ):
        with pytest.raises(InvalidArgument) as info:
            canonical(tenant, {**item, **change}, policies)
        assert info.value.field == field


def test_the_metadata_is_signed_with_the_configured_key_and_names_the_configured_pdp(
    pdp: Pdp,
) -> None:
    meta = pdp.discover().json()
    assert pdp.metadata_key is not None
    claims = verify(meta["signed_metadata"], pdp.metadata_key)
    assert claims["iss"] == meta["policy_decision_point"] == pdp.base
    assert claims["search_resource_endpoint"] == pdp.base + "/access/v1/search/resource"
    head, _, sig = meta["signed_metadata"].split(".")
    forged = base64.urlsafe_b64encode(
        json.dumps({**claims, "access_evaluation_endpoint": "https://evil.example/"}).encode()
    ).decode().rstrip("=")  # fmt: skip
    with pytest.raises(ValueError, match="does not verify"):
        verify(f"{head}.{forged}.{sig}", pdp.metadata_key)
    other = generate_keypair()[1]
    with pytest.raises(ValueError, match="does not verify"):
        verify(meta["signed_metadata"], other)


def test_signed_metadata_needs_a_configured_base_url(tmp_path: Path) -> None:
    key = tmp_path / "metadata.key"
    key.write_bytes(generate_keypair()[0])
    with pytest.raises(ConfigError, match="REMIT_HTTP_BASE_URL"):
        load_config({"REMIT_AUTHZEN_METADATA_KEY": str(key)})
    with pytest.raises(ConfigError, match="https"):
        load_config({"REMIT_HTTP_BASE_URL": "http://pdp.example"})
