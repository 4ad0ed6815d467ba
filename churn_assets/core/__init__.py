"""What model, scoring and monitoring share: the feature contract, the bucket rule, the
reason wording and the quality metrics. Never imports dagster, nor the domains above it,
so each domain imports it without importing another domain."""
