"""SSM: managed nodes, Session Manager sessions, hybrid-node tags (moto has none of these)."""
