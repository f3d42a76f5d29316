"""Host-system adapters (LCS, PARIS) mapping raw records onto remit's canonical actor and
context. See the adapters issue; nothing is mapped yet."""
