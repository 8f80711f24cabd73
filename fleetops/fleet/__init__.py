"""Run the whole fleet locally: every process of the data flow, one command, one run directory."""
