"""Every asset key of the graph, defined once (key = schema / table of the DuckDB table it writes)."""
import dagster as dg

RAW = {source: dg.AssetKey(["raw", source]) for source in ("members", "transactions", "user_logs", "churn_labels")}
LABELS = dg.AssetKey(["features", "labels"])
MEMBER_FEATURES = dg.AssetKey(["features", "member_features"])
MONTHLY_CHURN = dg.AssetKey(["kpi", "monthly_churn"])
CHURN_MODEL = dg.AssetKey(["ml", "churn_model"])
PRODUCTION_MODEL = dg.AssetKey(["ml", "production_model"])
SCORING_FEATURES = dg.AssetKey(["scoring", "scoring_features"])
CHURN_SCORES = dg.AssetKey(["scoring", "churn_scores"])
WEEKLY_REPORT = dg.AssetKey(["reports", "weekly_churn_report"])
DRIFT_REPORT = dg.AssetKey(["monitoring", "drift_report"])
MODEL_PERFORMANCE = dg.AssetKey(["monitoring", "model_performance"])
SERVING_DRIFT = dg.AssetKey(["monitoring", "serving_drift"])
MARKETING_TREATMENTS = dg.AssetKey(["marketing", "treatments"])
RETENTION_EFFECT = dg.AssetKey(["marketing", "retention_effect"])
