"""Adapters as a library: the seed fixtures of every council through both adapters map to
exactly the canonical request and decide the same; every refusal names the value, the
council and the mapping file; broken mapping files fail to load with file and line."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from remit.engine.evaluate import decide
from remit.model.errors import InvalidArgument
from remit.model.policy import PolicySet
from remit.model.request import Actor, Request
from remit.tools.suites import build_request

import adapters
from adapters import MappingFileError, lcs, paris
from adapters._core import age_on, apply, map_records
from adapters._normalise import normalise
from adapters._tables import MAPPINGS_DIR
from tests.support.hosts import SCENARIOS, SYSTEMS, records, scenario, when

SEED_COUNCILS = {"torbay", "halton", "kirklees", "gloucestershire", "ap_scheme"}
WHEN = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)


def _pairs(recs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(r["table"], r["fields"]) for r in recs]


def _canonical(policies: PolicySet, s: dict[str, Any]) -> Request:
    ctx = dict(s["canonical"]["context"], decision_time=s["decision_time"])
    return build_request(policies, s["council"], s["decision"], s["canonical"]["actor"], ctx)


def _hosted(policies: PolicySet, s: dict[str, Any]) -> Request:
    ctx = dict(s["context"], decision_time=s["decision_time"])
    return build_request(policies, s["council"], s["decision"], {}, ctx)


def test_every_seed_council_has_both_mappings_and_a_fixture_through_both() -> None:
    assert {c for c, _ in adapters.available()} == SEED_COUNCILS
    assert set(adapters.available()) == {(c, s) for c in SEED_COUNCILS for s in SYSTEMS}
    assert {p.parent.parent.name for p in SCENARIOS} == SEED_COUNCILS


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_fixture_maps_to_the_canonical_request_and_decides_the_same(
    policies: PolicySet, path: Path, system: str
) -> None:
    s = scenario(path)
    canonical = _canonical(policies, s)
    merged, host = apply(_hosted(policies, s), system, _pairs(records(s, system)))
    assert merged.actor == canonical.actor
    assert dict(merged.facts) == dict(canonical.facts)
    assert merged.service_area == canonical.service_area
    want, got = decide(policies, canonical), decide(policies, merged)
    assert (got.allowed, got.rule, got.matched_role, got.area) == (
        want.allowed,
        want.rule,
        want.matched_role,
        want.area,
    )
    assert got.authorisers == want.authorisers and got.obligations == want.obligations
    assert ("allow" if got.allowed else "deny") == s["expect"]["effect"]
    if "rule" in s["expect"]:
        assert got.rule == s["expect"]["rule"]
    assert any(m.field == "actor.roles" for m in host.mapped)


def test_library_entry_points_per_system() -> None:
    s = scenario(next(p for p in SCENARIOS if p.parent.name == "tm_epo_exceptional"))
    by_lcs = lcs.map_records("torbay", _pairs(records(s, "lcs")), when(s))
    by_paris = paris.map_records("torbay", _pairs(records(s, "paris")), when(s))
    for host in (by_lcs, by_paris):
        assert host.roles == ("team_manager",)
        assert host.service_areas == ("mash",)
        assert host.facts["child_age"] == 10
        assert host.facts["cp_category"] == "NEG"
    assert by_lcs.tables.file == "adapters/mappings/torbay/lcs.yaml"


def test_normalising_folds_case_spacing_punctuation_and_abbreviations() -> None:
    assert normalise("Snr.  social-WORKER") == normalise("Senior Social Worker")
    assert normalise("Team Mgr") == "team manager"
    assert normalise("Duty & Assessment") == "duty and assessment"
    assert normalise("Director of Children’s Services") == "director of childrens services"
    assert normalise("Personal Advisor") == normalise("Personal Adviser")
    assert normalise("Team Manager (Locum)") != normalise("Team Manager")


def test_age_is_whole_years_at_the_decision_date() -> None:
    from datetime import date

    assert age_on(date(2012, 6, 3), date(2025, 6, 2)) == 12
    assert age_on(date(2012, 6, 2), date(2025, 6, 2)) == 13
    assert age_on(date(2008, 2, 29), date(2025, 2, 28)) == 16


# -- refusals: unmapped values name the value, the council and the file -----------------


def _worker(title: str = "Team Manager", dept: str = "MASH", **extra: Any) -> tuple[str, Any]:
    return (
        "DIM_WORKER",
        {"DIM_WORKER_ID": 1, "JOB_TITLE": title, "DEPARTMENT_NAME": dept, **extra},
    )


def _refused(
    records: list[tuple[str, Any]], system: str = "lcs", council: str = "torbay"
) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        map_records(council, system, records, WHEN)
    return info.value


def test_unmapped_job_title_is_refused_naming_value_council_and_file() -> None:
    err = _refused([_worker("Chief Cook and Bottle Washer")])
    assert err.field == "host.records[0].fields.JOB_TITLE"
    assert "'Chief Cook and Bottle Washer'" in err.message
    assert "council 'torbay'" in err.message
    assert "job_titles in adapters/mappings/torbay/lcs.yaml" in err.message


def test_unmapped_team_is_refused() -> None:
    err = _refused([_worker(dept="Team Narnia")])
    assert err.field == "host.records[0].fields.DEPARTMENT_NAME"
    assert (
        "'Team Narnia'" in err.message
        and "teams in adapters/mappings/torbay/lcs.yaml" in err.message
    )


def test_unmapped_allocation_team_is_refused() -> None:
    err = _refused(
        [
            ("DIM_DEPARTMENT", {"DIM_DEPARTMENT_ID": 9, "NAME": "Atlantis Team"}),
            (
                "FACT_INVOLVEMENTS",
                {"DIM_DEPARTMENT_ID": 9, "IS_ALLOCATED_CW_FLAG": "Y", "START_DTTM": "2025-01-01"},
            ),
        ]
    )
    assert "'Atlantis Team'" in err.message and "council 'torbay'" in err.message


def test_unmapped_legal_status_is_refused() -> None:
    err = _refused(
        [
            (
                "FACT_LEGAL_STATUS",
                {
                    "DIM_LOOKUP_LGL_STATUS_DESC": "Special guardianship order",
                    "START_DTTM": "2024-01-01",
                },
            )
        ],
        council="halton",
    )
    assert err.field == "host.records[0].fields.DIM_LOOKUP_LGL_STATUS_DESC"
    assert "'Special guardianship order'" in err.message
    assert "legal_statuses in adapters/mappings/halton/lcs.yaml" in err.message


def test_unknown_national_codes_are_refused() -> None:
    err = _refused([("EPISODE", {"LS": "C9", "DECOM": "2024-01-01"})], system="paris")
    assert "'C9'" in err.message and "adapters/mappings/torbay/paris.yaml" in err.message
    err = _refused(
        [("EPISODE", {"LS": "C2", "PLACE_PROVIDER": "PR9", "DECOM": "2024-01-01"})], system="paris"
    )
    assert "'PR9'" in err.message


def test_unmapped_cp_category_and_eligibility_are_refused() -> None:
    err = _refused([("FACT_CP_PLAN", {"CP_CATEGORY_DESC": "Bullying", "START_DTTM": "2025-01-01"})])
    assert "'Bullying'" in err.message and "cp_categories" in err.message
    err = _refused(
        [("DIM_CLA_ELIGIBILITY", {"DIM_LOOKUP_ELIGIBILITY_STATUS_DESC": "Eligible-ish"})]
    )
    assert "'Eligible-ish'" in err.message and "eligibility" in err.message


def test_unknown_system_table_and_missing_mapping_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as info:
        map_records("torbay", "mosaic", [], WHEN)
    assert info.value.field == "host.system"
    err = _refused([("FACT_SECRET_STUFF", {})])
    assert err.field == "host.records[0].table" and "FACT_SECRET_STUFF" in err.message
    with pytest.raises(InvalidArgument) as info:
        map_records("nowhere", "lcs", [], WHEN, root=tmp_path)
    assert "council 'nowhere' has no lcs mapping" in info.value.message


@pytest.mark.parametrize(
    "council",
    ["../secret", "../halton", "halton/../torbay", "/etc", "..", "torbay/", "TORBAY", "x" * 300],
)
def test_a_council_string_never_becomes_a_mapping_path(tmp_path: Path, council: str) -> None:
    """A council id from a request is checked as a name and then only looked up, as a key,
    in the listing of the mapping folder: "../" reaches nothing and no path leaks."""
    outside = tmp_path / "mappings"
    (outside / "secret").mkdir(parents=True)
    shutil.copy(MAPPINGS_DIR / "torbay" / "lcs.yaml", outside / "secret" / "lcs.yaml")
    with pytest.raises(InvalidArgument) as info:
        map_records(council, "lcs", [("DIM_WORKER", {})], WHEN, root=outside / "none")
    assert info.value.field == "council"
    assert str(tmp_path) not in info.value.message
    assert "/" not in info.value.message


def test_ambiguous_records_are_refused_never_picked() -> None:
    err = _refused(
        [
            (
                "FACT_LEGAL_STATUS",
                {"DIM_LOOKUP_LGL_STATUS_DESC": "Full care order", "START_DTTM": "2024-01-01"},
            ),
            (
                "FACT_LEGAL_STATUS",
                {"DIM_LOOKUP_LGL_STATUS_DESC": "Interim care order", "START_DTTM": "2024-03-01"},
            ),
        ]
    )
    assert "remit never picks" in err.message
    err = _refused([_worker(), _worker("Social Worker")])
    assert "2 DIM_WORKER records" in err.message


def test_missing_and_malformed_fields_never_echo_the_date_of_birth() -> None:
    err = _refused([("DIM_PERSON", {"BIRTH_DTTM": "17/09/2014 (Ellis)"})])
    assert err.field == "host.records[0].fields.BIRTH_DTTM"
    assert "17/09" not in str(err) and "Ellis" not in str(err)
    err = _refused([("DIM_PERSON", {"BIRTH_DTTM": "2030-01-01"})])
    assert "2030" not in str(err)
    err = _refused([("DIM_WORKER", {"DIM_WORKER_ID": 1})])
    assert err.field == "host.records[0].fields.JOB_TITLE" and "required" in err.message
    err = _refused([_worker(WORKER_ID_CODE="12345-X")])
    assert "Social Work England" in err.message and "12345" not in str(err)


def test_agency_title_contradicted_by_agency_flag_is_refused() -> None:
    err = _refused(
        [("WORKER", {"WORKER_ID": "7", "JOB_TITLE": "Locum Team Manager", "AgencyWorker": 0})],
        system="paris",
    )
    assert "agency" in err.message


def test_dob_is_withheld_in_mapped_values() -> None:
    host = map_records(
        "torbay", "lcs", [("DIM_PERSON", {"BIRTH_DTTM": "2014-09-17T00:00:00"})], WHEN
    )
    (m,) = [m for m in host.mapped if m.field == "context.child_age"]
    assert m.canonical == "10" and "2014" not in m.raw and "withheld" in m.raw


# -- precedence: canonical fields fill the gaps; conflicts are refused --------------------


def _req(**kw: Any) -> Request:
    actor = kw.pop("actor", Actor(id="", roles=()))
    return Request(council="torbay", decision="apply_epo", actor=actor, decision_time=WHEN, **kw)


def test_canonical_fields_fill_what_records_do_not_say() -> None:
    merged, _ = apply(_req(facts={"exceptional_circumstances": True}), "lcs", [_worker()])
    assert merged.actor.roles == ("team_manager",)
    assert merged.facts["exceptional_circumstances"] is True


def test_agreeing_canonical_fields_are_accepted() -> None:
    actor = Actor(id="1", roles=("team_manager",), service_areas=("mash",))
    merged, _ = apply(_req(actor=actor), "lcs", [_worker()])
    assert merged.actor == Actor(id="1", roles=("team_manager",), service_areas=("mash",))


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"actor": Actor(id="", roles=("director",))}, "actor.roles"),
        ({"actor": Actor(id="someone-else", roles=())}, "actor.id"),
        ({"actor": Actor(id="", roles=(), service_areas=("iyss",))}, "actor.service_areas"),
        ({"service_area": "iyss"}, "context.service_area"),
        ({"facts": {"legal_status": "V2"}}, "context.legal_status"),
        ({"facts": {"cp_plan": True}}, "context.cp_plan"),
        ({"facts": {"child_age": 17}}, "context.child_age"),
    ],
)
def test_conflicting_canonical_fields_are_refused(kw: dict[str, Any], field: str) -> None:
    recs = [
        _worker(),
        ("DIM_DEPARTMENT", {"DIM_DEPARTMENT_ID": 3, "NAME": "MASH"}),
        ("FACT_INVOLVEMENTS", {"DIM_DEPARTMENT_ID": 3, "IS_ALLOCATED_CW_FLAG": "Y"}),
        ("FACT_LEGAL_STATUS", {"DIM_LOOKUP_LGL_STATUS_DESC": "Full care order"}),
        ("FACT_CP_PLAN", {"START_DTTM": "2020-01-01", "END_DTTM": "2021-01-01"}),
        ("DIM_PERSON", {"BIRTH_DTTM": "2014-09-17"}),
    ]
    with pytest.raises(InvalidArgument) as info:
        apply(_req(**kw), "lcs", recs)
    assert info.value.field == field
    assert "send one of them or make them agree" in info.value.message
    if field == "context.child_age":
        assert "17" not in info.value.message and "10" not in info.value.message


def test_closed_and_future_records_do_not_apply() -> None:
    host = map_records(
        "torbay",
        "lcs",
        [
            ("FACT_CLA", {"START_DTTM": "2020-01-01", "END_DTTM": "2021-01-01"}),
            (
                "FACT_LEGAL_STATUS",
                {"DIM_LOOKUP_LGL_STATUS_DESC": "Full care order", "START_DTTM": "2026-01-01"},
            ),
        ],
        WHEN,
    )
    assert host.facts["looked_after"] is False
    assert "legal_status" not in host.facts


# -- mapping files ------------------------------------------------------------------------


def test_shipped_mappings_name_only_roles_areas_and_casenotes_of_their_scheme(
    policies: PolicySet,
) -> None:
    for council, system in adapters.available():
        t = adapters.load(council, system)
        policy = policies.councils[council]
        for e in t.job_titles.values():
            assert e.canonical in policy.roles, (t.file, e.line, e.canonical)
        for e in t.teams.values():
            assert e.canonical == "" or e.canonical in policy.areas, (t.file, e.line)
        casenotes = {o.casenote for r in policy.rules.values() for o in r.obligations}
        for casenote, e in t.casenote_types.items():
            assert casenote in casenotes, (t.file, e.line, casenote)


def _copy(tmp_path: Path, council: str = "torbay", system: str = "lcs") -> Path:
    target = tmp_path / council / f"{system}.yaml"
    target.parent.mkdir(parents=True)
    shutil.copy(MAPPINGS_DIR / council / f"{system}.yaml", target)
    return target


def _load_error(tmp_path: Path, council: str = "torbay", system: str = "lcs") -> MappingFileError:
    with pytest.raises(MappingFileError) as info:
        adapters.load(council, system, tmp_path)
    return info.value


def test_one_title_mapped_to_two_roles_fails_to_load_with_file_and_line(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    text = path.read_text()
    path.write_text(
        text.replace(
            "job_titles:\n",
            'job_titles:\n  - {title: "TEAM  manager.", role: head_of_service}\n',
        )
    )
    err = _load_error(tmp_path)
    (problem,) = err.problems
    assert problem.file.endswith("torbay/lcs.yaml")
    lines = path.read_text().splitlines()
    assert "Team Manager" in lines[problem.line - 1]
    assert "one title cannot map to two values" in problem.message
    assert "head_of_service" in problem.message and "team_manager" in problem.message


def test_schema_and_code_problems_are_all_reported_with_lines(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    text = path.read_text()
    text = text.replace("code: C2,", "code: C7,").replace(
        "teams:\n", "teams:\n  - {name: Moon Base, area: mash, colour: blue}\n"
    )
    path.write_text(text)
    err = _load_error(tmp_path)
    assert any("colour" in p.message for p in err.problems)
    lines = path.read_text().splitlines()
    for p in err.problems:
        assert p.file.endswith("torbay/lcs.yaml") and p.line > 1
    assert any("Moon Base" in lines[p.line - 1] for p in err.problems)


def test_bad_codes_and_wrong_council_fail_to_load(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    path.write_text(
        path.read_text()
        .replace("code: C2,", "code: C7,")
        .replace("council: torbay", "council: halton")
    )
    err = _load_error(tmp_path)
    messages = " | ".join(str(p) for p in err.problems)
    assert "'C7' is not one of" in messages and "must equal the directory" in messages


def test_profile_override_changes_field_names_without_code(tmp_path: Path) -> None:
    path = _copy(tmp_path, system="paris")
    path.write_text(
        path.read_text().replace(
            "job_titles:\n",
            "profile:\n  worker:\n    table: HR_POST\n"
            "    fields: {id: POST_ID, job_title: POST_TITLE, team: UNIT}\n"
            "job_titles:\n",
        )
    )
    host = map_records(
        "torbay",
        "paris",
        [("HR_POST", {"POST_ID": "P-1", "POST_TITLE": "Team Manager", "UNIT": "MASH"})],
        WHEN,
        root=tmp_path,
    )
    assert host.roles == ("team_manager",) and host.actor_id == "P-1"
    with pytest.raises(InvalidArgument):
        map_records(
            "torbay",
            "paris",
            [("WORKER", {"WORKER_ID": "1", "JOB_TITLE": "Team Manager"})],
            WHEN,
            root=tmp_path,
        )


def test_profile_with_unknown_concept_fields_fails_to_load(tmp_path: Path) -> None:
    path = _copy(tmp_path, system="paris")
    path.write_text(
        path.read_text().replace(
            "job_titles:\n",
            "profile:\n  worker:\n    table: HR\n    fields: {id: X, shoe_size: Y}\n  payroll:\n"
            "    table: PAY\njob_titles:\n",
        )
    )
    messages = " | ".join(str(p) for p in _load_error(tmp_path, system="paris").problems)
    assert "needs field 'job_title'" in messages
    assert "unknown field 'shoe_size'" in messages
    assert "unknown concept 'payroll'" in messages
