"""`sync` and `apply` print a change waiting for its directory as waiting, and it does not make them exit 1."""

from idlifecycle.cli.sync import _report_results
from idlifecycle.model import Action, Change, Outcome, Plan, Result

DELETE = Change("google", Action.DELETE, "S1", "jdoe", "retention ended", target="g1")
DISABLE = Change("google", Action.DISABLE, "S2", "bray", "left", target="g2")


def test_a_waiting_delete_is_printed_waiting_and_the_exit_code_stays_0(capsys):
    waits = "the delete waits for Data Transfer T1 of g1's Drive and Calendar to archive@school.example (new)"
    plan = Plan((DELETE,), {})
    assert _report_results(plan, [Result(DELETE.change_id, Outcome.WAITING, waits, retryable=True)]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines() == ["Applied: 0 applied, 0 already so, 0 failed, 1 waiting.",
                                        f"  waiting: google: delete jdoe: {waits}"]
    assert printed.err == ""


def test_a_failure_beside_it_still_exits_1(capsys):
    plan = Plan((DELETE, DISABLE), {})
    code = _report_results(plan, [Result(DELETE.change_id, Outcome.WAITING, "waits"),
                                  Result(DISABLE.change_id, Outcome.FAILED, "refused")])
    assert code == 1
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0] == "Applied: 0 applied, 0 already so, 1 failed, 1 waiting."
    assert printed.err == "  failed: google: disable bray: refused\n"
