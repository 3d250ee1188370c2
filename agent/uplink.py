"""The uplink veth pair between the SoftGate's namespace and each routing domain's.

Every pair is addressed alike (docs/softgate-state.md): the SoftGate side `vxp<L3VNI>`
169.254.253.0/31 and fe80::1, the domain side `vxpub` 169.254.253.1/31 and fe80::2.
The domain side's IPv4 address is a source only the domain's own traffic (dnsmasq asking
upstream resolvers) would carry, and no reply could find it again among a hundred
domains: netfilter maps it to the domain's public address on the way out.
"""

from __future__ import annotations

import ipaddress
from typing import Final

ROOT_V4: Final = ipaddress.IPv4Interface("169.254.253.0/31")
DOMAIN_V4: Final = ipaddress.IPv4Interface("169.254.253.1/31")
ROOT_V6: Final = ipaddress.IPv6Interface("fe80::1/64")
DOMAIN_V6: Final = ipaddress.IPv6Interface("fe80::2/64")
