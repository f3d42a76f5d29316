"""Host records over gRPC (a real server on a free port) and from the command line: the
seed fixtures decide as their canonical requests do, the response lists the mapped values,
and every refusal is INVALID_ARGUMENT with a BadRequest naming the field — never an allow.
Names and dates of birth from the records never appear in a response or the decision log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from remit.model.policy import PolicySet
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import ROOT
from tests.support.grpc_errors import bad_request
from tests.support.hosts import (
    SCENARIOS,
    SYSTEMS,
    canonical_pb,
    hosted_pb,
    record_files,
    records,
    scenario,
)
from tests.support.sinks import MemorySink


def _stub(channel: grpc.Channel) -> pb_grpc.AuthorisationServiceStub:
    return pb_grpc.AuthorisationServiceStub(channel)


def _personal(recs: list[dict[str, Any]]) -> list[str]:
    """Names and dates of birth in the records: none may be echoed."""
    out = []
    for r in recs:
        for key in ("FORENAME", "SURNAME", "BIRTH_DTTM", "DOB"):
            value = r["fields"].get(key)
            if value:
                out.append(str(value)[:10] if key in ("BIRTH_DTTM", "DOB") else str(value))
    return out


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_host_records_over_grpc_decide_as_the_canonical_request(
    channel: grpc.Channel, policies: PolicySet, audit_sink: MemorySink, path: Path, system: str
) -> None:
    s = scenario(path)
    want = _stub(channel).Authorise(canonical_pb(policies, s), timeout=5)
    got = _stub(channel).Authorise(hosted_pb(policies, s, system), timeout=5)
    assert got.effect == want.effect
    assert pb.Effect.Name(got.effect) == f"EFFECT_{s['expect']['effect'].upper()}"
    assert (got.rule_id, got.matched_role, got.service_area, got.reason) == (
        want.rule_id,
        want.matched_role,
        want.service_area,
        want.reason,
    )
    assert list(got.authorisers) == list(want.authorisers)
    assert list(got.obligations) == list(want.obligations)
    assert list(got.failed_conditions) == list(want.failed_conditions)
    assert not want.mapped
    mapped = {m.field: m for m in got.mapped}
    assert mapped["actor.roles"].canonical == s["canonical"]["actor"]["roles"][0]
    assert mapped["actor.roles"].source.startswith(
        f"adapters/mappings/{s['council']}/{system}.yaml:"
    )
    # nothing personal is echoed or logged
    text = str(got) + json.dumps(audit_sink.entries[-1])
    for value in _personal(records(s, system)):
        assert value not in text
    entry = audit_sink.entries[-1]
    assert entry["decision_id"] == got.decision_id
    assert entry["actor_roles"] == [mapped["actor.roles"].canonical]
    assert entry["actor_id"] == mapped["actor.id"].canonical != ""
    if "context.child_age" in mapped:
        assert mapped["context.child_age"].raw == "[date of birth withheld]"


def test_casenote_codes_are_given_for_record_obligations(
    channel: grpc.Channel, policies: PolicySet
) -> None:
    s = scenario(next(p for p in SCENARIOS if p.parent.name == "aids_adaptations_cla"))
    s["context"] = {"amount_pence": 350000, "emergency": False}  # over £2,000: the panel
    resp = _stub(channel).Authorise(hosted_pb(policies, s, "lcs"), timeout=5)
    codes = [m for m in resp.mapped if m.field == "obligations.casenote"]
    casenotes = {o.casenote for o in resp.obligations if o.casenote}
    assert {m.canonical for m in codes} == casenotes & {
        "financial audit trail",
        "management decision",
    }


def _refusal(channel: grpc.Channel, request: pb.AuthoriseRequest) -> tuple[grpc.RpcError, Any]:
    with pytest.raises(grpc.RpcError) as info:
        _stub(channel).Authorise(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return info.value, bad_request(info.value).field_violations[0]


def _epo(policies: PolicySet) -> dict[str, Any]:
    return scenario(next(p for p in SCENARIOS if p.parent.name == "tm_epo_exceptional"))


@pytest.mark.parametrize(
    ("table", "column", "value", "listing"),
    [
        ("DIM_WORKER", "JOB_TITLE", "Chief Executive Officer of Fun", "job_titles"),
        ("DIM_WORKER", "DEPARTMENT_NAME", "Team Narnia", "teams"),
        ("DIM_DEPARTMENT", "NAME", "Atlantis Team", "teams"),
        ("FACT_CP_PLAN", "CP_CATEGORY_DESC", "Bullying", "cp_categories"),
    ],
)
def test_unmapped_values_over_grpc_name_value_council_and_file(
    channel: grpc.Channel, policies: PolicySet, table: str, column: str, value: str, listing: str
) -> None:
    s = _epo(policies)
    recs = records(s, "lcs")
    for r in recs:
        if r["table"] == table:
            r["fields"][column] = value
    _, violation = _refusal(channel, hosted_pb(policies, s, "lcs", recs))
    assert violation.field.endswith(f".fields.{column}")
    assert f"'{value}'" in violation.description
    assert "council 'torbay'" in violation.description
    assert f"{listing} in adapters/mappings/torbay/lcs.yaml" in violation.description


def test_unmapped_legal_status_over_grpc(channel: grpc.Channel, policies: PolicySet) -> None:
    s = scenario(next(p for p in SCENARIOS if p.parent.name == "secure_accommodation_under_13"))
    recs = records(s, "lcs")
    for r in recs:
        if r["table"] == "FACT_LEGAL_STATUS":
            r["fields"]["DIM_LOOKUP_LGL_STATUS_DESC"] = "Special Guardianship Order"
    _, violation = _refusal(channel, hosted_pb(policies, s, "lcs", recs))
    assert "'Special Guardianship Order'" in violation.description
    assert "legal_statuses in adapters/mappings/halton/lcs.yaml" in violation.description


def test_unknown_host_system_and_table_over_grpc(
    channel: grpc.Channel, policies: PolicySet
) -> None:
    s = _epo(policies)
    _, violation = _refusal(channel, hosted_pb(policies, s, "mosaic", []))
    assert violation.field == "host.system"
    _, violation = _refusal(
        channel, hosted_pb(policies, s, "lcs", [{"table": "FACT_CASENOTES", "fields": {}}])
    )
    assert violation.field == "host.records[0].table"


def test_conflicting_canonical_role_over_grpc_is_refused(
    channel: grpc.Channel, policies: PolicySet
) -> None:
    s = _epo(policies)
    request = hosted_pb(policies, s, "lcs")
    request.actor.roles.append("director")
    _, violation = _refusal(channel, request)
    assert violation.field == "actor.roles"
    assert "['director']" in violation.description and "['team_manager']" in violation.description


def test_bad_dob_over_grpc_is_refused_without_echo(
    channel: grpc.Channel, policies: PolicySet
) -> None:
    s = _epo(policies)
    recs = records(s, "lcs")
    for r in recs:
        if r["table"] == "DIM_PERSON":
            r["fields"]["BIRTH_DTTM"] = "17th September 2014"
    err, violation = _refusal(channel, hosted_pb(policies, s, "lcs", recs))
    assert violation.field.endswith(".fields.BIRTH_DTTM")
    assert "September" not in (err.details() or "") and "September" not in violation.description


def test_batch_items_carry_their_own_host_errors(
    channel: grpc.Channel, policies: PolicySet
) -> None:
    s = _epo(policies)
    bad = records(s, "lcs")
    bad[0]["fields"]["JOB_TITLE"] = "Wizard"
    resp = _stub(channel).AuthoriseBatch(
        pb.AuthoriseBatchRequest(
            items=[
                pb.BatchItem(correlation_id="ok", request=hosted_pb(policies, s, "lcs")),
                pb.BatchItem(correlation_id="bad", request=hosted_pb(policies, s, "lcs", bad)),
            ]
        ),
        timeout=5,
    )
    ok, bad_result = resp.results
    assert ok.response.effect == pb.EFFECT_ALLOW and ok.response.mapped
    assert bad_result.error.code == 3 and "'Wizard'" in bad_result.error.message


# -- the command line ---------------------------------------------------------------------


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remit.cli", "check", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize("system", SYSTEMS)
def test_cli_check_with_host_records_matches_grpc(
    channel: grpc.Channel, policies: PolicySet, system: str
) -> None:
    s = _epo(policies)
    files = ",".join(str(p) for p in record_files(s, system))
    out = _check(
        "--council",
        "torbay",
        "--decision",
        "apply_epo",
        "--host-system",
        system,
        "--records",
        files,
        "--fact",
        "exceptional_circumstances=true",
        "--fact",
        f"decision_time={s['decision_time']}",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    resp = _stub(channel).Authorise(hosted_pb(policies, s, system), timeout=5)
    assert cli["effect"] == "ALLOW" and cli["rule"] == resp.rule_id == "6.7-tm-exceptional"
    assert [(m["field"], m["canonical"]) for m in cli["mapped"]] == [
        (m.field, m.canonical) for m in resp.mapped
    ]
    for value in _personal(records(s, system)):
        assert value not in out.stdout


def test_cli_check_refuses_unmapped_title_and_needs_a_role_or_records(tmp_path: Path) -> None:
    worker = tmp_path / "worker.json"
    worker.write_text(
        json.dumps(
            [
                {
                    "table": "DIM_WORKER",
                    "fields": {
                        "DIM_WORKER_ID": 9,
                        "JOB_TITLE": "Grand Vizier",
                        "DEPARTMENT_NAME": "MASH",
                    },
                }
            ]
        )
    )
    out = _check(
        "--council",
        "torbay",
        "--decision",
        "apply_epo",
        "--host-system",
        "lcs",
        "--records",
        str(worker),
        "--json",
    )
    assert out.returncode == 2
    err = json.loads(out.stderr)
    assert err["error"] == "INVALID_ARGUMENT" and "'Grand Vizier'" in err["message"]
    assert "adapters/mappings/torbay/lcs.yaml" in err["message"]
    out = _check("--council", "torbay", "--decision", "apply_epo")
    assert out.returncode == 2 and "--role is required" in out.stderr
    out = _check(
        "--council",
        "torbay",
        "--decision",
        "apply_epo",
        "--host-system",
        "lcs",
        "--records",
        str(tmp_path / "missing.json"),
    )
    assert out.returncode == 2 and "cannot read JSON" in out.stderr


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_host_number_that_json_cannot_carry_is_invalid_argument(
    channel: grpc.Channel, bad: float
) -> None:
    """NaN and infinities in a host record's Struct were an INTERNAL (the JSON conversion
    raised); they are refused naming the field."""
    request = pb.AuthoriseRequest(
        council="torbay",
        decision="apply_epo",
        host=pb.HostInput(system="lcs", records=[pb.HostRecord(table="DIM_WORKER")]),
    )
    request.host.records[0].fields.update({"DIM_WORKER_ID": 9, "JOB_TITLE": "Team Manager"})
    request.host.records[0].fields.fields["DIM_WORKER_ID"].number_value = bad
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.AuthorisationServiceStub(channel).Authorise(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    fields = [v.field for v in bad_request(info.value).field_violations]
    assert fields == ["host.records[0].fields[DIM_WORKER_ID]"]
