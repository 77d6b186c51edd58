"""Talos Linux: machine configs generated as ``talosctl gen config`` does, patches, API calls."""
