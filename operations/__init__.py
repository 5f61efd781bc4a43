"""Operations shared by every process: Prometheus metrics, readiness, MLflow tracking."""
