"""Search over real names and packages, on SQLite and PostgreSQL: relevance, filters, permissions,
and an index that follows publication."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.channels.artifacts import ArtifactService, Selection
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.search.errors import SearchFilterError
from stockade.search.index import SearchIndexer
from stockade.search.models import SearchDocument
from stockade.search.query import MatchKind, SearchFilters, parse_filters
from stockade.search.service import SearchPage, SearchService
from tests.factories.packages import PackageSpec, build_conda
from tests.integration.conftest import add_package
from tests.integration.search.support import fill, publish

ANONYMOUS = Principal(user_id=None, username="anonymous")


def search(
    container: Container, q: str, who: Principal = ANONYMOUS, **filters: object
) -> SearchPage:
    parsed = parse_filters(**filters) if filters else SearchFilters()  # type: ignore[arg-type]
    with container.read_factory() as session:
        return SearchService(session).search(who, q, parsed, limit=20)


def names(page: SearchPage) -> list[str]:
    return [h.name for h in page.hits]


@pytest.fixture
def filled(container: Container, admin: Principal) -> Container:
    fill(container, admin, "cran")
    return container


def test_exact_prefix_typo_and_summary_words_find_real_names(filled: Container) -> None:
    exact = search(filled, "r-ggplot2")
    assert exact.hits[0].name == "r-ggplot2" and exact.hits[0].match is MatchKind.EXACT
    assert names(search(filled, "r-gg"))[:2] in (["r-ggplot2", "r-ggvis"], ["r-ggvis", "r-ggplot2"])
    assert search(filled, "r-gg").hits[0].match is MatchKind.PREFIX
    rcpp = names(search(filled, "r-rcpp"))
    assert rcpp[0] == "r-rcpp" and set(rcpp[1:4]) == {
        "r-rcpparmadillo",
        "r-rcppeigen",
        "r-rcpproll",
    }
    assert names(search(filled, "r-jsonlte"))[0] == "r-jsonlite"  # a letter left out
    assert names(search(filled, "xtensr-io"))[0] == "xtensor-io"
    fuzzy = search(filled, "r-ggplto2").hits[0]
    assert (fuzzy.name, fuzzy.match) == ("r-ggplot2", MatchKind.FUZZY)
    assert set(names(search(filled, "toolkit"))) == {"test-package", "other-package"}
    assert names(search(filled, "microframework")) == ["flask"]
    assert names(search(filled, "tensor algebra"))[0] == "xtensor-io"  # summary words
    assert names(search(filled, "pend")) == []
    assert "r-rcppeigen" in names(search(filled, "eigen"))  # inside a name


def test_hits_say_where_and_what(filled: Container) -> None:
    hit = search(filled, "flask").hits[0]
    assert (hit.channel, hit.latest_version, hit.subdirs) == ("cran", "0.11.1", ("noarch",))
    assert hit.summary == "A microframework based on Werkzeug, Jinja2 and good intentions"
    with filled.read_factory() as session:
        held = SearchService(session).where(ANONYMOUS, "r-ggplot2")
    assert held and {h.channel for h in held} == {"cran"}
    assert held[0].version >= held[-1].version and held[0].scan_status == "unfetched"


def test_filters(filled: Container) -> None:
    assert names(search(filled, "r-gg", subdirs=["noarch"])) == []
    assert "r-ggplot2" in names(search(filled, "r-gg", subdirs=["linux-64"]))
    assert names(search(filled, "", licenses=["bsd 2-clause"])) == ["mock"]
    assert names(search(filled, "flask", verdicts=["unfetched"])) == []
    assert names(search(filled, "flask", verdicts=["clean"])) == ["flask"]
    assert names(search(filled, "flask", signatures=["unsigned"])) == ["flask"]
    assert names(search(filled, "flask", signatures=["signed"])) == []
    assert names(search(filled, "flask", severities=["critical"])) == []
    assert names(search(filled, "flask", severities=["none"])) == ["flask"]
    assert names(search(filled, "flask", channels=["elsewhere"])) == []
    with pytest.raises(SearchFilterError) as bad:
        parse_filters(severities=["catastrophic"])
    assert bad.value.extra["field"] == "severity"


def test_downloads_rank_and_filter(filled: Container) -> None:
    from stockade.audit.downloads_models import DownloadDaily
    from tests.integration.search.support import channel_id

    cran = channel_id(filled, "cran")
    with transaction(filled.factory) as session:
        session.add(
            DownloadDaily(
                day=date(2026, 12, 1),
                channel_id=cran,
                subdir="linux-64",
                filename="x.tar.bz2",
                name="r-ggvis",
                count=7,
                bytes=70,
            )
        )
    SearchIndexer(filled.factory).refresh()
    ranked = names(search(filled, "r-gg"))
    assert ranked[0] == "r-ggvis"  # the prefix matches tie: downloads decide
    assert names(search(filled, "r-gg", has_downloads=True)) == ["r-ggvis"]


def test_private_channel_never_shows_to_who_cannot_read_it(
    container: Container, admin: Principal
) -> None:
    fill(container, admin, "secret", privacy="private")
    for q in ("flask", "flas", "flaskk", "microframework", "r-ggplto2"):
        assert search(container, q).hits == [], q
        assert search(container, q, admin).hits, q
    with container.read_factory() as session:
        assert SearchService(session).where(ANONYMOUS, "flask") == []
        assert SearchService(session).where(admin, "flask")


def test_index_follows_publication(filled: Container, admin: Principal, tmp_path: Path) -> None:
    add_package(filled, admin, "cran", build_conda(tmp_path, PackageSpec(name="aiohttp")))
    assert search(filled, "aiohttp").hits == []  # not served yet: not found
    publish(filled)
    assert names(search(filled, "aiohtp")) == ["aiohttp"]  # served: found, typo and all
    with transaction(filled.factory) as session:
        ArtifactService(session).remove(admin, "cran", Selection(name="flask"))
    assert search(filled, "flask").hits == []  # no servable build: gone at once
    publish(filled)
    assert search(filled, "microframework").hits == []
    with filled.read_factory() as session:
        assert session.scalar(select(func.count()).where(SearchDocument.name == "flask")) == 0
