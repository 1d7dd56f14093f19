"""The database service's pure parts: datastore versions, the name rule, settings from a flavor, the restore filter."""

import pytest

from cloudlab.database import backup, datastore
from cloudlab.errors import InvalidInput, NotFound


@pytest.fixture
def versions(tmp_path, monkeypatch):
    """A fake /usr/lib/postgresql with versions 13 and 15 (and a folder that holds no server)."""
    for version in ("13", "15"):
        for tool in ("postgres", "initdb"):
            path = tmp_path / version / "bin" / tool
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    (tmp_path / "14" / "lib").mkdir(parents=True)
    monkeypatch.setattr(datastore, "POSTGRES_ROOT", tmp_path)
    return tmp_path


def test_versions_are_what_the_host_has_newest_first(versions):
    assert datastore.versions() == {"postgresql": ["15", "13"]}
    assert datastore.resolve("postgresql", None) == ("postgresql", "15")
    assert datastore.resolve("postgresql", 13) == ("postgresql", "13")


def test_unknown_datastore_or_version_lists_the_available_ones(versions):
    with pytest.raises(NotFound, match=r"no datastore 'mariadb'") as info:
        datastore.resolve("mariadb", None)
    assert info.value.fix == "use one of: postgresql 15, 13"
    with pytest.raises(NotFound, match=r"no version '14'") as info:
        datastore.resolve("postgresql", "14")
    assert info.value.fix == "use one of: postgresql 15, 13"


def test_no_postgresql_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(datastore, "POSTGRES_ROOT", tmp_path / "absent")
    with pytest.raises(NotFound, match="no datastore") as info:
        datastore.resolve("postgresql", None)
    assert "make lab" in info.value.fix


@pytest.mark.parametrize("name", ["orders", "_tmp", "a1_b2", "x" * 63])
def test_names_psql_takes_unquoted_are_accepted(name):
    assert datastore.check_name(name, "database") == name
    assert datastore.check_name(name, "user") == name


@pytest.mark.parametrize("name", ["Orders", "1st", "with space", "x" * 64, "", None, 7, "caf\u00e9", "a-b"])
def test_other_names_are_refused_with_the_rule(name):
    with pytest.raises(InvalidInput) as info:
        datastore.check_name(name, "database")
    assert info.value.fix == f"use {datastore.NAME_RULE}"


def test_reserved_names():
    with pytest.raises(InvalidInput, match="pg_"):
        datastore.check_name("pg_reader", "user")
    assert datastore.check_name("pg_data", "database") == "pg_data"     # only role names are reserved so
    for name in ("os_admin", "postgres"):
        with pytest.raises(InvalidInput, match="reserved"):
            datastore.check_name(name, "user")
    with pytest.raises(InvalidInput, match="reserved"):
        datastore.check_name("template0", "database")


def test_passwords():
    assert datastore.check_password("it's 'quoted'", "app") == "it's 'quoted'"
    for bad in ("", None, "a\0b", 12):
        with pytest.raises(InvalidInput, match="password"):
            datastore.check_password(bad, "app")


def test_settings_fit_the_flavor():
    small = datastore.settings(256, 1)
    assert small["shared_buffers"] == "64MB" and small["max_connections"] == 32
    assert datastore.settings(128, 1)["shared_buffers"] == "32MB"
    assert datastore.settings(4096, 4)["max_connections"] == 100


def test_config_text_quotes_strings():
    text = datastore.render_config({"listen_addresses": "10.0.0.5", "port": 5432, "fsync": True,
                                    "application_name": "it's"})
    assert "listen_addresses = '10.0.0.5'\n" in text and "port = 5432\n" in text
    assert "fsync = on\n" in text and "application_name = 'it''s'\n" in text


def test_configuration_is_checked_for_form():
    assert datastore.check_configuration(None) == {}
    assert datastore.check_configuration({"work_mem": "8MB", "log_statement": "all"}) == {
        "work_mem": "8MB", "log_statement": "all"}
    for bad in ({"port": 1}, {"Work Mem": 1}, {"work_mem": [1]}, ["work_mem"]):
        with pytest.raises(InvalidInput):
            datastore.check_configuration(bad)


def test_the_restore_leaves_out_only_the_admins_role_lines():
    dump = (b"CREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'x';\nCREATE ROLE os_admin;\n"
            b"ALTER ROLE os_admin WITH SUPERUSER PASSWORD 'old';\n\\connect orders\n"
            b"COPY t (v) FROM stdin;\nALTER ROLE os_admin WITH SUPERUSER PASSWORD 'data, not a role'\n\\.\n")
    # split anywhere: the filter must not depend on where the chunks end
    for size in (1, 7, 64, len(dump)):
        chunks = [dump[i:i + size] for i in range(0, len(dump), size)]
        out = b"".join(backup.skip_admin_role(chunks))
        assert out == (b"CREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'x';\n\\connect orders\n"
                       b"COPY t (v) FROM stdin;\nALTER ROLE os_admin WITH SUPERUSER PASSWORD 'data, not a role'\n"
                       b"\\.\n")
