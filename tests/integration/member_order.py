"""The order in which a cluster's aggregator sums its members' updates: by address."""

from __future__ import annotations

from collections.abc import Sequence

from node.data import SiteData
from testnet.report import HospitalSummary


def address_order(sites: Sequence[SiteData], hospitals: Sequence[HospitalSummary]) -> list[int]:
    """Indices of ``sites`` sorted by the address of the hospital that ran each: an in-memory
    run that takes its sites in this order sums the updates as the aggregators did (float32
    sums depend on the order)."""
    address = {h.site: h.address.lower() for h in hospitals}
    return sorted(range(len(sites)), key=lambda index: address[sites[index].site])


def in_address_order(
    sites: Sequence[SiteData], hospitals: Sequence[HospitalSummary]
) -> list[SiteData]:
    """``sites`` in :func:`address_order`."""
    return [sites[index] for index in address_order(sites, hospitals)]
