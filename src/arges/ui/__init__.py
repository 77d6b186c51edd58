"""The dashboard: the fleet as web pages, served by ``arges up`` under ``/ui`` (see ``app``)."""
