"""Observation schema, feature engineering and the observation stores."""
