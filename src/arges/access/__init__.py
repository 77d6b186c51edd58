"""Who may use the provisioning network's endpoints: per-boot credentials, what DHCP saw,
rate limits and refusals (see :mod:`arges.access.guard`)."""
