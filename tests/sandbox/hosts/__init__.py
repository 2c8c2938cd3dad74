"""Simulated instances: network namespaces, OS users, a real sshd per instance, EIC key store."""
