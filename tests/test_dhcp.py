"""The lab network's DHCP pool and lease time are settings (unit tests: no libvirt).

``tests/test_soak.py`` runs them on the real lab network.
"""

import ipaddress
import xml.etree.ElementTree as ET

import pytest

import cloudlab as cl
from cloudlab import config, host

SUBNET = ipaddress.ip_network("10.213.7.0/24")


def test_default_pool_is_100_addresses_from_100_with_an_hour_of_lease():
    root = ET.fromstring(host.network_xml("cloudlab-lab-net", SUBNET))
    rng = root.find("ip/dhcp/range")
    assert (rng.get("start"), rng.get("end")) == ("10.213.7.100", "10.213.7.199")
    assert rng.find("lease").attrib == {"expiry": "60", "unit": "minutes"}
    assert root.find("ip").get("address") == "10.213.7.1"
    assert root.find("forward") is None          # isolated


@pytest.mark.parametrize("pool, first, last", [(1, ".100", ".100"), (155, ".100", ".254"), (250, ".5", ".254")])
def test_pools_stay_inside_the_subnet_above_the_gateway(pool, first, last):
    start, end = host.dhcp_range(SUBNET, pool)
    assert str(start).endswith(first) and str(end).endswith(last)
    assert int(end) - int(start) + 1 == pool


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLOUDLAB_DHCP_POOL", "4")
    monkeypatch.setenv("CLOUDLAB_DHCP_LEASE_MINUTES", "2")
    assert (config.dhcp_pool(), config.dhcp_lease_minutes()) == (4, 2)
    monkeypatch.delenv("CLOUDLAB_DHCP_POOL")
    monkeypatch.delenv("CLOUDLAB_DHCP_LEASE_MINUTES")
    assert (config.dhcp_pool(), config.dhcp_lease_minutes()) == (100, 60)


@pytest.mark.parametrize("variable, value", [("CLOUDLAB_DHCP_POOL", "0"), ("CLOUDLAB_DHCP_POOL", "251"),
                                             ("CLOUDLAB_DHCP_POOL", "many"), ("CLOUDLAB_DHCP_LEASE_MINUTES", "1"),
                                             ("CLOUDLAB_DHCP_LEASE_MINUTES", "1.5")])
def test_unusable_settings_are_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(cl.InvalidInput) as err:
        config.dhcp_pool() if variable.endswith("POOL") else config.dhcp_lease_minutes()
    assert variable in err.value.message and "whole number" in err.value.fix
