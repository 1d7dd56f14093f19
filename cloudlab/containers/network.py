"""Containers on the lab network: a CNI network list that plugs them into the lab's bridge.

The lab network is a Linux bridge made by libvirt (``virbrN``) with its address
(the gateway) and a DHCP server for guests.  CNI's ``bridge`` plugin connects a
container the same way a guest's tap is connected: one end of a veth pair goes
into the container's network namespace as ``eth0``, the other end is enslaved
to the bridge.  ``host-local`` IPAM hands out fixed addresses from the top of
the subnet, above libvirt's DHCP range, so guests and containers never collide
and meet on one layer-2 segment.  ``isGateway: false`` and ``ipMasq: false``:
the bridge keeps the address libvirt gave it and nothing is NATed anywhere.
``portmap`` publishes container ports on the lab host's addresses.
"""

import ipaddress
import json
import os
import shutil
from pathlib import Path

# libvirt's DHCP range for guests ends at .199 (cloudlab.host.network_xml); containers take the rest
FIRST_HOST_INDEX = 199


def address_range(subnet):
    """``(first, last)`` addresses containers get on ``subnet``: above the guests' DHCP range."""
    hosts = list(ipaddress.ip_network(subnet).hosts())
    # a subnet smaller than the lab's /24 (a learner's own network): the upper half
    first = FIRST_HOST_INDEX if len(hosts) > FIRST_HOST_INDEX + 10 else len(hosts) // 2
    return hosts[first], hosts[-1]


def conflist(name, bridge, subnet, gateway, data_dir, portmap=True):
    """The CNI network list (a dict) for network ``name`` on the existing bridge ``bridge``.

    Args:
        name: network name (carries the lab's prefix).
        bridge: the lab network's bridge device, e.g. ``virbr0``.
        subnet, gateway: the lab network's subnet and the bridge's address.
        data_dir: where host-local records the addresses it handed out.
        portmap: add the portmap plugin (needs iptables) so ports can be published.
    """
    first, last = address_range(subnet)
    plugins = [{
        "type": "bridge", "bridge": bridge, "isGateway": False, "ipMasq": False, "hairpinMode": True,
        "ipam": {"type": "host-local", "dataDir": str(data_dir),
                 "routes": [{"dst": "0.0.0.0/0"}],
                 "ranges": [[{"subnet": str(ipaddress.ip_network(subnet)), "rangeStart": str(first),
                              "rangeEnd": str(last), "gateway": str(gateway)}]]},
    }]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": "0.4.0", "name": name, "plugins": plugins}


def write(network_dir, name, bridge, subnet, gateway, ipam_dir):
    """Write ``name.conflist`` into ``network_dir`` (whole or not at all); returns its path."""
    data = conflist(name, bridge, subnet, gateway, Path(ipam_dir), portmap=bool(shutil.which("iptables")))
    path = Path(network_dir) / f"{name}.conflist"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def remove(network_dir, name, ipam_dir):
    """Remove network ``name``'s list and the addresses host-local recorded for it."""
    (Path(network_dir) / f"{name}.conflist").unlink(missing_ok=True)
    shutil.rmtree(Path(ipam_dir) / name, ignore_errors=True)
