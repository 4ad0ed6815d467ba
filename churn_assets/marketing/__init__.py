"""The retention experiment: who is contacted, in which arm, with which action. Pure (no Dagster)."""
