"""The discovery endpoint: agents register servers and report wipes and installs."""
