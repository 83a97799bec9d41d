"""Privacy: the policy that says each column's role (`policy`) and how anonymous data is under it (`anonymity`)."""
