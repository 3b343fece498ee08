"""A refusal no form catches reaches the error page in words, one sentence a problem:
"Finding 2: HO is required", never the field path `findings[1].ho: is required`."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tracker.errors import Problem, ValidationFailed


def refusing(client: TestClient, *problems: Problem) -> str:
    def refuse() -> None:
        raise ValidationFailed(problems)

    client.app.add_api_route("/refuse-for-test", refuse)  # type: ignore[attr-defined]
    response = client.get("/refuse-for-test")
    assert response.status_code == 422
    return response.text


def test_one_problem_is_one_sentence_naming_the_row_and_field(client: TestClient) -> None:
    page = refusing(client, Problem("form", None, "findings[1].ho", "is required"))
    assert "Finding 2: HO is required" in page
    assert "findings[1]" not in page and ": is required" not in page


def test_several_problems_are_listed_each_in_words(client: TestClient) -> None:
    page = refusing(
        client,
        Problem("form", None, "as_of", "is not a date in the form YYYY-MM-DD"),
        Problem("form", None, "reason", "is required"),
    )
    assert "2 problems found" in page
    assert "<li>As-of date is not a date" in page
    assert "<li>Reason is required</li>" in page
