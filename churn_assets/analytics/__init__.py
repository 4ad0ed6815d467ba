"""Lock-free analyst access: user-facing tables published as Parquet plus a
small DuckDB file of views over them (DESIGN.md section 3, issue 7.1)."""
