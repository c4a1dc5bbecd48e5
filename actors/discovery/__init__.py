"""Discovery: one actor per balancer, a module per source (static, file, dns, etcd)."""

from ._actor import DiscoveryMemory, SourceStatus, run_discovery

__all__ = ["DiscoveryMemory", "SourceStatus", "run_discovery"]
