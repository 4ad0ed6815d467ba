"""Lock-free analyst access: user-facing tables published as Parquet plus a
small DuckDB file of views over them (README, "Querying the scores")."""
