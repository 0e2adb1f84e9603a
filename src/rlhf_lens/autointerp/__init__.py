"""Automated interpretability: one ``FeatureExamples`` record per feature (``examples``), explained by an
LLM and scored by the registered scorers (``scorers``: simulation, detection), through ``pipeline``."""
