"""Retention and limits, without a server: the organisation tightens the
instance, quotas count what is needed, recipients are checked (SEC-18, SEC-33)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coffre.domain import limits as rules
from coffre.errors import InvalidInput, PermissionDenied, QuotaExceeded, TooLarge

INSTANCE = rules.InstanceLimits(max_file_size=1000, default_expiry_days=7,
                                max_expiry_days=365, max_recipients=100)


def limits(**policy: object) -> rules.Limits:
    return rules.effective(INSTANCE, rules.OrganisationPolicy(**policy))  # type: ignore[arg-type]


def test_the_organisation_only_tightens_the_instance() -> None:
    assert limits().max_file_size == 1000
    assert limits(max_file_size=10).max_file_size == 10
    assert limits(max_expiry_days=3).default_expiry == timedelta(days=3)  # default follows
    assert limits(max_recipients=5).max_recipients == 5
    with pytest.raises(InvalidInput):
        rules.check_policy(INSTANCE, rules.OrganisationPolicy(max_file_size=1001))
    with pytest.raises(InvalidInput):
        rules.check_policy(INSTANCE, rules.OrganisationPolicy(max_recipients=0))
    with pytest.raises(InvalidInput):
        rules.check_policy(INSTANCE, rules.OrganisationPolicy(
            recipient_domains_allowed=("a.fr",), recipient_domains_denied=("a.fr",)))


def test_quotas_default_to_the_instance_and_the_organisation_overrides() -> None:
    instance = rules.InstanceLimits(1000, 7, 365, 100, user_quota=50, organisation_quota=None)
    assert rules.effective(instance, rules.OrganisationPolicy()).user_quota == 50
    assert rules.effective(instance, rules.OrganisationPolicy(user_quota=80)).user_quota == 80


def test_quota_refuses_what_does_not_fit_and_says_why() -> None:
    rules.check_quota(5, rules.Usage(95, 100), rules.Usage(0, None))
    with pytest.raises(QuotaExceeded) as refused:
        rules.check_quota(6, rules.Usage(95, 100), rules.Usage(0, None))
    assert refused.value.details["quota"] == {"scope": "user", "used": 95, "limit": 100,
                                              "needed": 6}
    assert refused.value.status == 413
    with pytest.raises(QuotaExceeded) as organisation:
        rules.check_quota(6, rules.Usage(0, None), rules.Usage(1000, 1005))
    assert organisation.value.details["quota"]["scope"] == "organisation"
    assert rules.Usage(120, 100).free == 0 and rules.Usage(1, None).free is None


def test_expiry_and_permanent_storage() -> None:
    assert rules.resolve_expiry(None, permanent=False, limits=limits()) == timedelta(days=7)
    assert rules.resolve_expiry(None, permanent=True, limits=limits()) is None
    with pytest.raises(PermissionDenied):
        rules.resolve_expiry(None, permanent=True, limits=limits(allow_permanent=False))
    with pytest.raises(InvalidInput):
        rules.resolve_expiry(timedelta(days=11), permanent=False,
                             limits=limits(max_expiry_days=10))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert rules.lowers_expiry(None, now)
    assert rules.lowers_expiry(now, now - timedelta(hours=1))
    assert not rules.lowers_expiry(now, None)
    assert not rules.lowers_expiry(now, now + timedelta(hours=1))


def test_recipients_count_and_domains() -> None:
    rules.check_recipients(["a@exemple.fr"], limits(max_recipients=1))
    with pytest.raises(PermissionDenied) as crowd:
        rules.check_recipients(["a@exemple.fr", "b@exemple.fr"], limits(max_recipients=1))
    assert crowd.value.details["reason"] == "too_many_recipients"
    denied = limits(recipient_domains_denied=("gmail.com",))
    with pytest.raises(PermissionDenied) as refused:
        rules.check_recipients(["x@GMAIL.com", "y@mail.gmail.com", "z@exemple.fr"], denied)
    assert refused.value.details["domains"] == ["gmail.com", "mail.gmail.com"]
    only = limits(recipient_domains_allowed=("chu.fr",))
    rules.check_recipients(["a@chu.fr", "b@imagerie.chu.fr"], only)
    with pytest.raises(PermissionDenied):
        rules.check_recipients(["a@notchu.fr"], only)  # a suffix is not a subdomain


def test_domains_are_normalised() -> None:
    assert rules.parse_domains([" @CHU.fr ", "chu.fr", "hôpital.fr", ""], "f") == (
        "chu.fr", "xn--hpital-ixa.fr")
    with pytest.raises(InvalidInput):
        rules.parse_domains(["pas un domaine"], "f")


def test_sizes() -> None:
    with pytest.raises(TooLarge):
        rules.check_file_size(11, limits(max_file_size=10))
    rules.check_transfer_size(10**12, limits())
    with pytest.raises(TooLarge):
        rules.check_transfer_size(11, limits(max_transfer_size=10))


@pytest.mark.parametrize("field", ["max_transfer_size", "user_quota", "organisation_quota",
                                   "backup_quota"])
def test_sizes_without_an_instance_limit_stop_at_the_maximum(field: str) -> None:
    """Issue 15, finding 15: 10^30 overflowed the database column (a 500)."""
    rules.check_policy(INSTANCE, rules.OrganisationPolicy(**{field: rules.MAX_BYTES}))
    with pytest.raises(InvalidInput) as refused:
        rules.check_policy(INSTANCE, rules.OrganisationPolicy(**{field: 10**30}))
    assert refused.value.details == {"field": field, "maximum": rules.MAX_BYTES}
