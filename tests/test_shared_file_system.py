"""The shared file system's pure parts: the share server's configuration, addresses, mount commands."""

import pytest

import cloudlab as cl
from cloudlab.shared_file_system import check_address
from cloudlab.shared_file_system.ganesha import client_blocks, render
from cloudlab.shared_file_system.share import AccessRule, Share


def test_most_specific_client_comes_first_whatever_the_order_rules_were_added():
    # Ganesha takes the first CLIENT block that matches: one address must beat its network
    text = client_blocks([("10.213.0.0/24", "ro"), ("10.213.0.105", "rw"), ("0.0.0.0/0", "ro")])
    lines = [line.strip() for line in text.splitlines()]
    assert lines == ["CLIENT { Clients = 10.213.0.105; Access_Type = RW; }",
                     "CLIENT { Clients = 10.213.0.0/24; Access_Type = RO; }",
                     "CLIENT { Clients = 0.0.0.0/0; Access_Type = RO; }"]


def test_configuration_binds_the_lab_address_and_exports_each_share():
    text = render("10.213.0.1", 2049, "/state/recovery", [
        {"share_id": "s2", "name": "two", "export_id": 2, "path": "/m/s2", "pseudo": "/share-s2", "rules": []},
        {"share_id": "s1", "name": "one", "export_id": 1, "path": "/m/s1", "pseudo": "/share-s1",
         "rules": [("10.213.0.105", "rw")]}])
    assert "Bind_addr = 10.213.0.1;" in text and "NFS_Port = 2049;" in text and "Protocols = 4;" in text
    assert text.index("Export_Id = 1;") < text.index("Export_Id = 2;")
    one = text[text.index("Export_Id = 1;"):text.index("Export_Id = 2;")]
    assert "Path = /m/s1;" in one and "Pseudo = /share-s1;" in one
    assert "Access_Type = None;" in one                 # whom no rule names gets nothing
    assert "Clients = 10.213.0.105; Access_Type = RW;" in one
    assert "CLIENT" not in text[text.index("Export_Id = 2;"):]
    assert text.count("{") == text.count("}")


@pytest.mark.parametrize("good, canonical", [("10.213.0.105", "10.213.0.105"), (" 10.213.0.0/24", "10.213.0.0/24"),
                                             ("0.0.0.0/0", "0.0.0.0/0"), ("fd00::1", "fd00::1")])
def test_addresses_and_networks(good, canonical):
    assert check_address(good) == canonical


@pytest.mark.parametrize("bad", ["10.213.0", "10.213.0.300", "web1", "", None, 42, "10.213.0.0/33"])
def test_malformed_addresses_are_refused(bad):
    with pytest.raises(cl.InvalidInput, match="IP address"):
        check_address(bad)


def test_a_network_with_host_bits_is_refused_with_both_readings():
    with pytest.raises(cl.InvalidInput) as info:
        check_address("10.213.0.5/24")
    assert "10.213.0.0/24" in info.value.fix and "10.213.0.5" in info.value.fix


def test_mount_command_and_rule_for():
    share = Share(id="abc", name="docs", size=1, export_id=1, export_location="10.213.0.1:/share-abc",
                  access_rules=[AccessRule("r1", "10.213.0.0/24", "ro"), AccessRule("r2", "10.213.0.105", "rw")])
    assert share.mount_command("/mnt/docs") == ("mkdir -p /mnt/docs && mount -t nfs4 -o vers=4.2,addr=10.213.0.1 "
                                                "10.213.0.1:/share-abc /mnt/docs")
    assert (share.server_address, share.path) == ("10.213.0.1", "/share-abc")
    assert share.rule_for("10.213.0.105").access_level == "rw"     # the most specific rule decides
    assert share.rule_for("10.213.0.7").access_level == "ro"
    assert share.rule_for("10.9.9.9") is None
    assert share.to_manila()["export_locations"] == ["10.213.0.1:/share-abc"]
