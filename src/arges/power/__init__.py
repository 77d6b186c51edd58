"""Power management: one driver interface, drivers per protocol, and the one factory."""
