"""Cron expressions: what Kubeflow Pipelines would refuse, or read otherwise than meant, is refused here first."""
import pytest

from gemstone.apps import cron


@pytest.mark.parametrize("expression", [
    "0 2 * * *", "*/15 * * * *", "0 9-17/2 * * MON-FRI", "0 0 1,15 * *", "30 4 1 JAN,jul ?", "0 0 * * 0",
    "59 23 31 12 6", "5/10 * * * *",
])
def test_accepted_and_given_kfps_seconds_field(expression):
    assert cron.validate(expression) == "0 " + expression


def test_six_fields_are_kfps_own_form():
    assert cron.validate("30 0  2 * * 1-5") == "30 0 2 * * 1-5"


@pytest.mark.parametrize("expression, says", [
    ("61 2 * * *", "minute 61 is out of range 0-59"),
    ("0 24 * * *", "hour 24 is out of range 0-23"),
    ("0 2 0 * *", "day 0 is out of range 1-31"),
    ("0 2 * 13 *", "month 13 is out of range 1-12"),
    ("0 2 * * 7", "weekday 7 is out of range 0-6"),
    ("0 2 * * MON-FRY", "weekday 'FRY' is not a number or a name (SUN-SAT)"),
    ("0 2 * JANUARY *", "month 'JANUARY' is not a number or a name (JAN-DEC)"),
    ("MON 2 * * *", "minute 'MON' is not a number"),
    ("0 17-9 * * *", "hour '17-9': the range runs backwards"),
    ("*/0 * * * *", "minute '*/0': a step must be 1 or more"),
    ("0 2 * * 1,,5", "weekday '' is not N, N-M, * or a step"),
    ("? 2 * * *", "only the day and the weekday may be '?'"),
    ("0 2 * *", "4 fields, not 5"),
    ("nightly", "1 field, not 5"),
    ("60 0 2 * * *", "second 60 is out of range 0-59"),
])
def test_refused_with_the_field_that_is_wrong(expression, says):
    with pytest.raises(cron.CronError) as error:
        cron.validate(expression)
    assert says in str(error.value)
