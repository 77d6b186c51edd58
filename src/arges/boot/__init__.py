"""Network boot services: DHCP (proxy or full), TFTP, and the boot HTTP endpoints."""
