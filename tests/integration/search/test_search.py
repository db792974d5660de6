"""Search over real names and packages, on SQLite and PostgreSQL: relevance, filters, permissions,
and an index that follows publication."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.channels.artifacts import ArtifactService, Selection
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.search.errors import SearchFilterError
from stockade.search.index import SearchIndexer
from stockade.search.models import SearchDocument
from stockade.search.query import MatchKind, SearchFilters, parse_filters
from stockade.search.service import SearchPage, SearchService
from stockade.settings import load_settings
from tests.conftest import PG_URL, backends
from tests.factories.packages import PackageSpec, build_conda
from tests.integration.conftest import add_package
from tests.integration.search.support import fill, publish
from tests.support.server import fresh_database

# one worker builds the shared filled container of each backend (CI budget)
pytestmark = pytest.mark.xdist_group("search-index")
ANONYMOUS = Principal(user_id=None, username="anonymous")


def search(
    container: Container, q: str, who: Principal = ANONYMOUS, **filters: object
) -> SearchPage:
    parsed = parse_filters(**filters) if filters else SearchFilters()  # type: ignore[arg-type]
    with container.read_factory() as session:
        return SearchService(session).search(who, q, parsed, limit=20)


def names(page: SearchPage) -> list[str]:
    return [h.name for h in page.hits]


@dataclass(frozen=True)
class World:
    container: Container
    admin: Principal


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One container per backend for the tests that only read: ``cran`` (public) and
    ``secret`` (private) filled and published once."""
    tmp = tmp_path_factory.mktemp(f"search-{request.param}")
    with fresh_database(str(request.param), tmp, PG_URL, migrated=True) as url:
        built = Container.build(load_settings(data_dir=tmp, database_url=url))
        built.bootstrap()
        with transaction(built.factory) as session:
            users = UserService(session)
            admin = users.principal_for(users.get_by_name("admin"), via="password")
        fill(built, admin, "cran")
        fill(built, admin, "secret", privacy="private", records=False)
        yield World(built, admin)
        built.close()


@pytest.fixture
def filled(world: World) -> Container:
    return world.container


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
    assert names(search(filled, "flaks"))[0] == "flask"  # two letters swapped
    assert names(search(filled, "r-")) and search(filled, "-/-%").hits == []  # no words in it
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


def test_private_channel_never_shows_to_who_cannot_read_it(world: World) -> None:
    for q in ("flask", "flas", "flaskk", "microframework"):
        assert {h.channel for h in search(world.container, q).hits} == {"cran"}, q
        assert {h.channel for h in search(world.container, q, world.admin).hits} == {
            "cran",
            "secret",
        }, q
    with world.container.read_factory() as session:
        assert {h.channel for h in SearchService(session).where(ANONYMOUS, "flask")} == {"cran"}
        assert {h.channel for h in SearchService(session).where(world.admin, "flask")} == {
            "cran",
            "secret",
        }


def test_index_follows_publication(container: Container, admin: Principal, tmp_path: Path) -> None:
    fill(container, admin, "cran", records=False)
    filled = container
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


def test_a_publication_of_many_names_sketches_them_and_the_job_completes(
    container: Container, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stockade.search.index.SKETCH_ABOVE", 1)  # 2-3 names a subdir here
    fill(container, admin, "big", records=False)
    with container.read_factory() as session:
        stale = session.scalar(select(func.count()).where(SearchDocument.fingerprint.is_(None)))
    assert stale and stale >= 3  # sketched in the switching transaction
    assert names(search(container, "xtensor-io"))[:1] == ["xtensor-io"]  # findable at once
    assert names(search(container, "microframework")) == ["flask"]
    assert "0 documents" not in SearchIndexer(container.factory).refresh()
    with container.read_factory() as session:
        assert not session.scalar(select(func.count()).where(SearchDocument.fingerprint.is_(None)))
        flask = session.scalar(select(SearchDocument).where(SearchDocument.name == "flask"))
    assert flask is not None and flask.description and "Werkzeug" in flask.description
