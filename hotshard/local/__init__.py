"""Running hotshard on one machine: real services on free ports, traffic, the demo."""
