"""A cron schedule with valid syntax that never fires (``0 0 31 2 *``) is refused where it is
given, naming the field, instead of failing later with a 500 or a crashing scheduler (issue 11):
mirror schedules, vulnerability feed schedules and the LDAP sync schedule of the settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stockade.core.errors import InvalidInputError
from stockade.mirroring.service import next_run
from stockade.mirroring.validation import check_schedule
from stockade.settings import LdapSettings
from stockade.vulns.feedsync import check_fields

NEVER = ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 31 4,6,9,11 *"]


@pytest.mark.parametrize("schedule", NEVER)
def test_mirror_schedule(schedule: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_schedule(schedule)
    assert caught.value.extra["field"] == "schedule"
    assert "never fires" in caught.value.detail
    assert next_run(schedule) is None  # one stored before the check cannot stop the scheduler


@pytest.mark.parametrize("schedule", NEVER)
def test_feed_schedule(schedule: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_fields("https://example.org/feed.json", "osv", schedule)
    assert caught.value.extra["field"] == "schedule"


@pytest.mark.parametrize("schedule", NEVER)
def test_ldap_sync_schedule(schedule: str) -> None:
    with pytest.raises(ValidationError, match="never fires"):
        LdapSettings(sync_schedule=schedule)


def test_schedules_that_fire_are_kept() -> None:
    assert check_schedule(" 0  2 29 2 * ") == "0 2 29 2 *"  # leap days exist
    check_fields("https://example.org/feed.json", "osv", "0 * * * *")
    assert LdapSettings(sync_schedule="*/30 * * * *").sync_schedule == "*/30 * * * *"
